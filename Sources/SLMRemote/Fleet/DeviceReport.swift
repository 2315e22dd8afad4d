// What a device tells its publisher after each sync round (`reports/<device>.json` on the
// remote, or a PUT to a report URL): per followed model, the version installed, the version it
// is going for and how that went. Small, credential-free, signed by the device's own key with a
// counter that only grows, and read back by `slmstore fleet`, which counts only enrolled
// devices' valid reports and treats every file as hostile input.

import SLMFormats
import SLMLocalStore
import Foundation

/// What a device sends back after a round: per followed model, what it runs, what it is going for
/// and how that went (Format.md). Never credentials, URLs or paths; at most 4 KiB.
public struct DeviceReport: Sendable, Equatable {
    /// How a followed model stands after a round.
    public enum State: String, Sendable, CaseIterable {
        /// On its target version (installed this round or before).
        case installed
        /// Not on its target yet, and no failure recorded: the round stopped before it.
        case pending
        /// Fetching its target now (sent as a round starts a download; the round's own report follows).
        case downloading
        /// The target failed its health check here; the device went back.
        case rejected
        /// The round failed while working on this model (download, verification, install).
        case failed
    }

    /// One followed model's standing.
    public struct Model: Sendable, Equatable {
        /// The version the device runs, if any.
        public var installed: String?
        /// The version it is going for, if known.
        public var target: String?
        /// How that stands.
        public var state: State
        /// For `failed`: what kind of failure (`untrusted`, `transport`, `remote`, `damaged`,
        /// `disk`, `other`); never a message, which could carry a URL or a path.
        public var errorClass: String?
        /// Bytes downloaded for this model in the round.
        public var bytesFetched: UInt64 = 0

        /// A model's standing from its fields.
        public init(installed: String?, target: String?, state: State, errorClass: String? = nil, bytesFetched: UInt64 = 0) {
            (self.installed, self.target, self.state, self.errorClass, self.bytesFetched) = (installed, target, state, errorClass, bytesFetched)
        }
    }

    /// The directory of a remote that reports go to (one file per device).
    public static let directory = "reports"
    /// A report is at most this long: the sink and the reader both hold to it.
    public static let maxEncodedSize = 4096
    /// Models a report may list.
    public static let maxModels = 16

    /// The device's id.
    public var device: String
    /// RFC 3339 UTC, when the round ended.
    public var time: String
    /// The followed models, by name.
    public var models: [String: Model]
    /// Grows with every report the device signs (format 2), so an older report of the same
    /// device written back over a newer one is told apart; 0 in an unsigned (format 1) report.
    public var counter: UInt64 = 0

    /// A report from its fields.
    public init(device: String, time: String, models: [String: Model], counter: UInt64 = 0) {
        (self.device, self.time, self.models, self.counter) = (device, time, models, counter)
    }

    /// Signed bytes are this prefix and the payload, so a device's signature over a report can
    /// never be taken for a signature over anything else.
    static let domain = Array("slmstore-report-v1\n".utf8)

    /// The payload's JSON (format 2 carries the counter).
    func payloadJSON(format: UInt64) -> JSONValue {
        var ms: [String: JSONValue] = [:]
        for (name, m) in models {
            var o: [String: JSONValue] = ["installed": m.installed.map { .string($0) } ?? .null, "target": m.target.map { .string($0) } ?? .null,
                                          "state": .string(m.state.rawValue), "bytes_fetched": .int(m.bytesFetched)]
            if let c = m.errorClass { o["error"] = .string(c) }
            ms[name] = .object(o)
        }
        var o: [String: JSONValue] = ["format": .int(format), "type": .string("slmstore-device-report"), "device": .string(device),
                                      "time": .string(time), "models": .object(ms)]
        if format >= 2 { o["counter"] = .int(counter) }
        return .object(o)
    }

    /// The signed file (format 2): canonical JSON + "\n" wrapping the payload, its device key and
    /// signature; nil if it would pass `maxEncodedSize`.
    public func signed(by key: Ed25519PrivateKey) throws -> [UInt8]? {
        guard models.count <= Self.maxModels else { return nil }
        let payload = payloadJSON(format: 2).canonicalBytes()
        let sig = try key.sign(Self.domain + payload)
        let bytes = JSONValue.object(["format": .int(2), "key": .string(key.publicKey.hex), "sig": .string(Hex.encode(sig)),
                                      "signed": .string(String(decoding: payload, as: UTF8.self))]).canonicalBytes() + [0x0a]
        return bytes.count <= Self.maxEncodedSize ? bytes : nil
    }

    /// The report's file name under `reports/`: the device id when it is a plain name, else a
    /// digest of it, so no id can name a path.
    public static func fileName(device: String) -> String {
        let plain = PlainName.isPlain(device, maxBytes: 128) && !device.hasPrefix(".")
        return (plain ? device : "sha256-" + SHA256Hasher.hash(Array(device.utf8)).hex.prefix(32)) + ".json"
    }

    /// Classifies an error for a report without its text.
    public static func errorClass(_ error: Error) -> String {
        guard let e = error as? SLMError else { return "other" }
        switch e.kind {
        case .untrusted: return "untrusted"
        case .transport, .remoteStatus: return "transport"
        case .remote, .unsupportedFormat: return "remote"
        case .damaged, .fileMismatch: return "damaged"
        case let .failed(m) where m.contains("disk space"): return "disk"
        default: return "other"
        }
    }

    /// The unsigned form (format 1, written before devices had keys): canonical JSON + "\n";
    /// nil if it would pass `maxEncodedSize` (too many or too long names).
    public func encoded() -> [UInt8]? {
        let bytes = payloadJSON(format: 1).canonicalBytes() + [0x0a]
        return bytes.count <= Self.maxEncodedSize && models.count <= Self.maxModels ? bytes : nil
    }

    /// The report in a file of either format, its signature not checked (`SignedDeviceReport`
    /// checks it): anything off is damaged (a device, or whoever can write there, wrote it).
    public static func decode(_ bytes: [UInt8], source: String) throws -> DeviceReport {
        try SignedDeviceReport.decode(bytes, source: source).report
    }

    /// Parses and bounds a report payload of `format` (1: the whole file; 2: the signed string).
    static func decodePayload(_ bytes: [UInt8], format: UInt64, source: String) throws -> DeviceReport {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "device report: \(p)") }
        guard bytes.count <= maxEncodedSize else { throw bad("larger than \(maxEncodedSize) bytes") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes, maxValues: 512) } catch { throw bad("not valid JSON").caused(by: error) }
        return try decodePayload(v, format: format, source: source)
    }

    /// The report a parsed payload of `format` holds, every field checked.
    static func decodePayload(_ v: JSONValue, format: UInt64, source: String) throws -> DeviceReport {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "device report: \(p)") }
        var counter: UInt64 = 0
        if format >= 2 {
            guard let c = v["counter"]?.uint64Value, c <= SignedRelease.maxSerial else { throw bad("a signed report needs a counter up to 2^53") }
            counter = c
        }
        guard v["type"]?.stringValue == "slmstore-device-report", v["format"]?.uint64Value == format,
              let device = v["device"]?.stringValue, !device.isEmpty, device.utf8.count <= 256,
              let time = v["time"]?.stringValue, Timestamp.parse(time) != nil,
              let list = v["models"]?.objectValue, list.count <= maxModels else {
            throw bad("needs type slmstore-device-report, format \(format), device, an RFC 3339 time and at most \(maxModels) models")
        }
        var models: [String: Model] = [:]
        for (name, m) in list {
            guard ModelName(parsing: name) != nil, let state = m["state"]?.stringValue.flatMap(State.init(rawValue:)) else {
                throw bad("model entry \(name.prefix(64)) needs a valid name and state")
            }
            func version(_ key: String) throws -> String? {
                guard let x = m[key], x != .null else { return nil }
                guard let s = x.stringValue, SemVer(parsing: s) != nil else { throw bad("\(key) of \(name) is not a version") }
                return s
            }
            models[name] = Model(installed: try version("installed"), target: try version("target"), state: state,
                                 errorClass: m["error"]?.stringValue.map { String($0.prefix(32)) }, bytesFetched: m["bytes_fetched"]?.uint64Value ?? 0)
        }
        return DeviceReport(device: device, time: time, models: models, counter: counter)
    }
}

/// A report file as read: the report, and for a signed one (format 2) the key it names, whether
/// the signature over the payload is valid for that key, and the payload's digest. Whether the
/// key is the device's enrolled key is the reader's question (`Fleet`).
public struct SignedDeviceReport: Sendable {
    /// The report.
    public var report: DeviceReport
    /// The key the file names; nil for an unsigned (format 1) report.
    public var key: Ed25519PublicKey?
    /// Whether the signature is valid for `key` (false for an unsigned report).
    public var signatureValid: Bool
    /// SHA-256 of the payload (the whole file for format 1): two reports with one counter and
    /// different digests are two different statements.
    public var payloadDigest: SHA256Digest

    /// Parses either format, bounded before anything is built.
    public static func decode(_ bytes: [UInt8], source: String) throws -> SignedDeviceReport {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "device report: \(p)") }
        guard bytes.count <= DeviceReport.maxEncodedSize else { throw bad("larger than \(DeviceReport.maxEncodedSize) bytes") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes, maxValues: 512) } catch { throw bad("not valid JSON").caused(by: error) }
        guard let format = v["format"]?.uint64Value else { throw bad("no format") }
        switch format {
        case 1:
            // The file is the payload: parsed once, above.
            return SignedDeviceReport(report: try DeviceReport.decodePayload(v, format: 1, source: source), key: nil,
                                      signatureValid: false, payloadDigest: SHA256Hasher.hash(bytes))
        case 2:
            guard let key = v["key"]?.stringValue.flatMap(Hex.decode).flatMap(Ed25519PublicKey.init(raw:)),
                  let sig = v["sig"]?.stringValue.flatMap(Hex.decode), sig.count == 64, let text = v["signed"]?.stringValue else {
                throw bad("a signed report needs key (64 hex), sig (128 hex) and signed (a string)")
            }
            let payload = Array(text.utf8)
            let report = try DeviceReport.decodePayload(payload, format: 2, source: source)
            return SignedDeviceReport(report: report, key: key, signatureValid: key.isValidSignature(sig, of: DeviceReport.domain + payload),
                                      payloadDigest: SHA256Hasher.hash(payload))
        default:
            throw SLMError.unsupportedFormat(path: source, what: "device report", found: format, supported: 2)
        }
    }
}
