// The store's `config` file: format version and the chunking and compression settings every
// add must use, so that the same bytes always become the same chunks in this store.

import SLMFormats

/// A store's `config` file: format, chunker parameters and compression level, fixed when the store
/// is created.
public struct StoreConfig: Equatable, Sendable {
    /// The store format this build writes and reads.
    public static let currentFormat: UInt64 = 1

    /// The store's format.
    public var format: UInt64 = currentFormat
    /// The chunker every writer of this store uses.
    public var chunker: ChunkerParameters = .default
    /// The zstd level chunks are compressed at.
    public var compressionLevel: Int = 3

    /// The defaults: current format, default chunker, zstd level 3.
    public init() {}

    /// The config as the JSON value Format.md specifies.
    public var json: JSONValue {
        .object([
            "type": .string("slmstore"),
            "format": .int(format),
            "chunker": .object([
                "algorithm": .string("fastcdc2020"),
                "min_size": .int(chunker.minSize),
                "avg_size": .int(chunker.avgSize),
                "max_size": .int(chunker.maxSize),
                "normalization": .int(chunker.normalization),
            ]),
            "compression": .object(["codec": .string("zstd"), "level": .int(compressionLevel)]),
        ])
    }

    /// The canonical JSON bytes and a newline, as written to `config`.
    public func encoded() -> [UInt8] { json.canonicalBytes() + [0x0a] }

    /// Decodes and checks a config file; a newer format is `unsupportedFormat`.
    public static func decode(_ bytes: [UInt8], source: String) throws -> StoreConfig {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: p) }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw bad("not a slmstore config").caused(by: error) }
        guard v["type"]?.stringValue == "slmstore" else { throw bad("not a slmstore config (no \"type\": \"slmstore\")") }
        guard let format = v["format"]?.uint64Value else { throw bad("config has no format number") }
        guard format <= currentFormat else {
            throw SLMError.unsupportedFormat(path: source, what: "store", found: format, supported: currentFormat)
        }
        var c = StoreConfig()
        c.format = format
        guard let ch = v["chunker"], ch["algorithm"]?.stringValue == "fastcdc2020",
              let mn = ch["min_size"]?.int64Value, let av = ch["avg_size"]?.int64Value,
              let mx = ch["max_size"]?.int64Value, let lv = ch["normalization"]?.int64Value else {
            throw bad("config has no valid chunker section")
        }
        c.chunker = ChunkerParameters(minSize: Int(mn), avgSize: Int(av), maxSize: Int(mx), normalization: Int(lv))
        try c.chunker.validate()
        guard let level = v["compression"]?["level"]?.int64Value, (-7...22).contains(level) else {
            throw bad("config has no valid compression level")
        }
        c.compressionLevel = Int(level)
        return c
    }
}
