// libFuzzer entry point for the decoders of everything slmstore reads from disk or a remote.
// Compiled together with the library sources by Benchmarks/fuzz/run; SLMFUZZ_TARGET picks the
// decoder. A decoder may reject its input with an SLMError; it must never crash, hang or read
// out of bounds (the address sanitizer is on).

import Foundation

private let target: String = ProcessInfo.processInfo.environment["SLMFUZZ_TARGET"] ?? "pack-index"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    switch target {
    case "pack-index":
        _ = try? PackIndex.decode(bytes, source: "fuzz")
    case "tree":
        _ = try? TreeObject.decode(bytes, source: "fuzz")
    case "version":
        _ = try? VersionObject.decode(bytes, source: "fuzz")
    case "manifest":
        _ = try? Manifest.decode(bytes, source: "fuzz")
    case "config":
        _ = try? StoreConfig.decode(bytes, source: "fuzz")
    case "safetensors":
        // The 8-byte length prefix, then the JSON header, as `add` reads them.
        guard bytes.count >= 8 else { return 0 }
        let n = bytes.readLE(UInt64.self, at: 0)
        guard n <= UInt64(bytes.count - 8) else { return 0 }
        _ = try? SafetensorsHeader.parse(headerJSON: Array(bytes[8..<8 + Int(n)]), headerLength: n,
                                         fileSize: UInt64(bytes.count) + 1 << 20, path: "fuzz")
    case "chunk-record":
        // A record as a remote serves it, checked against an index entry derived from its own
        // header (the hostile case: both lie consistently). Lengths are capped like a reader's.
        guard bytes.count >= PackFormat.recordHeaderSize,
              let header = try? PackFormat.parseRecordHeader(bytes, source: "fuzz"),
              header.rawLength > 0, header.rawLength <= 1 << 20 else { return 0 }
        let loc = ChunkLocation(pack: PackID(hex: String(repeating: "0", count: 32))!, offset: 16,
                                storedLength: header.storedLength, rawLength: header.rawLength, codec: header.codec)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(header.rawLength), alignment: 16)
        defer { out.deallocate() }
        _ = try? ChunkVerifier.decodeRecord(bytes, expected: header.id, location: loc, into: out, what: "fuzz")
    case "delta-record":
        // A delta record as a remote serves it, applied to base bytes a reader would supply.
        guard bytes.count >= PackFormat.recordHeaderSize,
              let header = try? PackFormat.parseRecordHeader(bytes, source: "fuzz"),
              header.codec == .delta, header.rawLength > 0, header.rawLength <= 1 << 20 else { return 0 }
        let loc = ChunkLocation(pack: PackID(hex: String(repeating: "0", count: 32))!, offset: 16,
                                storedLength: header.storedLength, rawLength: header.rawLength, codec: .delta)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(header.rawLength), alignment: 16)
        defer { out.deallocate() }
        _ = try? ChunkVerifier.decodeRecord(bytes, expected: header.id, location: loc, into: out, what: "fuzz") { _, _, count, _ in
            [UInt8](repeating: 0x3c, count: count)
        }
    case "delta-set":
        _ = try? DeltaSet.decode(bytes, source: "fuzz")
    case "gguf":
        // GGUF.read takes a path (it reads the header through a window): one scratch file.
        let path = "\(NSTemporaryDirectory())/slmstore-fuzz-\(getpid()).gguf"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        _ = try? GGUF.read(path: path)
    case "multi-pack-index":
        // Read with pread from a file, as a store opens it: one scratch file, opened, then
        // searched (through a chunk index, as every command does) for the ids its entries name
        // and for ids outside them.
        let path = "\(NSTemporaryDirectory())/slmstore-fuzz-\(getpid()).midx"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        guard let midx = try? MultiPackIndex.open(path) else { return 0 }
        var index = ChunkIndex()
        index.attach(midx, present: Set(midx.packs))
        var probes = [ChunkID(high: 0, low: 0), ChunkID(high: .max, low: .max), ChunkID(high: 1 << 63, low: 7)]
        let entries = MultiPackFormat.headerSize + midx.packs.count * (MultiPackFormat.packIDSize + 8)
        for i in 0..<min(midx.entryCount, 8) {
            let at = entries + i * MultiPackFormat.entrySize
            probes.append(ChunkID(high: bytes.readLE(UInt64.self, at: at).byteSwapped, low: bytes.readLE(UInt64.self, at: at + 8).byteSwapped))
        }
        for id in probes {
            _ = index.location(of: id)
            _ = index.fullLocation(of: id)
            _ = index.deltaLocations(of: id)
        }
    case "release":
        // Signed release metadata as a remote serves it: parsed, signatures checked, and used to
        // filter a manifest, as a device with --trust does.
        if let r = try? SignedRelease.decode(bytes, source: "fuzz") {
            _ = r.signers(among: r.signatures.map(\.key))
            _ = r.restrict(Manifest(project: "fuzz", lastUpdated: "", models: [:], packs: []))
        }
    case "device-report":
        // A report under a remote's reports/, as `fleet` reads and counts it.
        if let r = try? DeviceReport.decode(bytes, source: "fuzz") {
            var view = FleetView()
            Fleet.count(r, into: &view, now: 0, silentAfter: 60)
        }
    default:
        fatalError("unknown SLMFUZZ_TARGET \(target)")
    }
    return 0
}
