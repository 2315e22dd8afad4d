// What a device keeps about itself beside its installed models: a stable id (which rollout
// slices it falls in), the health check in progress (written before `current` flips, so a kill
// before the verdict is undone at the next start) and the versions it rejected.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation

/// A device's stable id, which decides the rollout slices it falls in.
public enum DeviceIdentity {
    static let fileName = ".slmstore-device-id"

    /// The id in `root`, generated once (128 random bits) and kept; `explicit` wins when given.
    public static func resolve(root: String, explicit: String?) throws -> String {
        if let explicit {
            guard !explicit.isEmpty, explicit.count <= 256, !explicit.contains("\n") else {
                throw SLMError.invalidSetting(.deviceID, problem: "must be a non-empty line of at most 256 characters")
            }
            return explicit
        }
        let path = root + "/" + fileName
        if FileSystem.exists(path) {
            let text = String(decoding: try FileSystem.readFile(path, limit: 4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { throw SLMError.damaged(path: path, problem: "empty device id") }
            return text
        }
        let id = FileSystem.randomHex(16)
        try FileSystem.writeAtomically(Array((id + "\n").utf8), to: path)
        return id
    }
}

/// A device's own Ed25519 key, which signs its reports: made on first run beside the device id
/// (`.slmstore-device-key`, PEM, mode 0600) and kept. The publisher enrolls its public key.
public enum DeviceKey {
    static let fileName = ".slmstore-device-key"

    /// The key in `root`, generated once.
    public static func resolve(root: String) throws -> Ed25519PrivateKey {
        let path = root + "/" + fileName
        if FileSystem.exists(path) { return try Ed25519PrivateKey.read(file: path) }
        try FileSystem.makeDirectories(root)
        let key = try Ed25519PrivateKey.generate()
        try FileSystem.writeAtomically(Array(key.pem.utf8), to: path, mode: 0o600)
        return key
    }
}

/// What signs a device's reports: its key, and the counter each report carries
/// (`.slmstore-report-counter`), raised before every report and never below the clock in
/// milliseconds, so a device whose counter file was lost still counts up from where it was.
public struct ReportSigner: Sendable {
    /// The device's key.
    public let key: Ed25519PrivateKey
    /// The install root holding the counter.
    public let root: String
    static let counterName = ".slmstore-report-counter"

    /// The signer of the device whose records are in `root` (its key made if absent).
    public init(root: String) throws {
        self.root = root
        key = try DeviceKey.resolve(root: root)
    }

    /// The next counter, saved before it is used.
    func nextCounter() throws -> UInt64 {
        let path = root + "/" + Self.counterName
        let stored = FileSystem.readCacheFile(path, limit: 64).flatMap {
            UInt64(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        } ?? 0
        let clock = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let next = min(max(stored &+ 1, clock), SignedRelease.maxSerial)
        try FileSystem.writeAtomically(Array("\(next)\n".utf8), to: path)
        return next
    }

    /// `report` with the next counter, signed; nil if it would pass the size bound.
    public func sign(_ report: DeviceReport) throws -> [UInt8]? {
        var r = report
        r.counter = try nextCounter()
        return try r.signed(by: key)
    }
}

/// `<model dir>/.slmstore-pending`: the version whose health check has not given its verdict,
/// and the version to return to.
struct PendingCheck {
    static let fileName = ".slmstore-pending"
    var version: String
    var previous: String?

    /// Nil when there is none. The file is replaced atomically, so a kill mid-write leaves the
    /// old one or none; one that exists and does not parse is damaged, an error, never "no
    /// check pending" (which would keep an unchecked version active).
    static func load(_ dir: InstallDirectory) throws -> PendingCheck? {
        let path = dir.root + "/" + fileName
        guard FileSystem.exists(path) else { return nil }
        let bytes = try FileSystem.readFile(path, limit: 4096)
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw SLMError.damaged(path: path, problem: "pending health check").caused(by: error) }
        guard let version = v["version"]?.stringValue, SemVer(parsing: version) != nil else {
            throw SLMError.damaged(path: path, problem: "pending health check names no valid version")
        }
        let previous = v["previous"]?.stringValue
        if let previous, SemVer(parsing: previous) == nil { throw SLMError.damaged(path: path, problem: "pending health check names an invalid previous version") }
        return PendingCheck(version: version, previous: previous)
    }

    func save(_ dir: InstallDirectory) throws {
        try FileSystem.makeDirectories(dir.root)
        try FileSystem.writeAtomically(JSONValue.object(["version": .string(version), "previous": previous.map { .string($0) } ?? .null])
            .canonicalBytes(), to: dir.root + "/" + Self.fileName)
    }

    static func clear(_ dir: InstallDirectory) throws {
        let path = dir.root + "/" + fileName
        guard unlink(path) == 0 || errno == ENOENT else { throw SLMError.io(path: path, operation: "unlink", errno: errno) }
        try FileSystem.syncDirectory(dir.root)
    }
}

/// `<model dir>/.slmstore-rejected`: version id → the rollout reset counter when it was rejected.
/// A rejected version is not taken again until the publisher raises the counter.
struct RejectedVersions {
    static let fileName = ".slmstore-rejected"
    var entries: [String: (version: String, reset: UInt64, time: String)] = [:]

    static func load(_ dir: InstallDirectory) throws -> RejectedVersions {
        let path = dir.root + "/" + fileName
        guard FileSystem.exists(path) else { return RejectedVersions() }
        let value: JSONValue
        do { value = try JSONValue.parse(try FileSystem.readFile(path, limit: 1 << 20)) } catch {
            throw SLMError.damaged(path: path, problem: "rejected versions").caused(by: error)
        }
        guard let object = value.objectValue else { throw SLMError.damaged(path: path, problem: "rejected versions: not a JSON object") }
        var r = RejectedVersions()
        for (id, e) in object {
            guard SHA256Digest(hex: id) != nil, let version = e["version"]?.stringValue, let reset = e["reset"]?.uint64Value else {
                throw SLMError.damaged(path: path, problem: "rejected versions: malformed entry \(id.prefix(64))")
            }
            r.entries[id] = (version, reset, e["time"]?.stringValue ?? "")
        }
        return r
    }

    func save(_ dir: InstallDirectory) throws {
        try FileSystem.writeAtomically(JSONValue.object(entries.mapValues {
            .object(["version": .string($0.version), "reset": .int($0.reset), "time": .string($0.time)])
        }).canonicalBytes(), to: dir.root + "/" + Self.fileName)
    }

    func rejects(_ id: SHA256Digest, reset: UInt64) -> Bool { entries[id.hex].map { $0.reset >= reset } ?? false }

    var versions: [String] { entries.values.map(\.version).sorted() }
}

/// Runs the operator's health check with the --on-update environment; false when it exits
/// non-zero, cannot start, or outlives `timeout` (then it is killed).
enum HealthCheck {
    static func run(_ command: String, environment: [String: String], timeout: Double, stop: StopFlag) -> (ok: Bool, detail: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.environment = environment
        do { try p.run() } catch { return (false, "could not start: \(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if p.isRunning {
            // Foundation starts the child as the leader of its own process group: signal the
            // group, so whatever the check started stops too, not only the shell.
            let pid = p.processIdentifier
            if kill(-pid, SIGTERM) != 0 { kill(pid, SIGTERM) }
            let grace = Date().addingTimeInterval(2)
            while p.isRunning && Date() < grace { Thread.sleep(forTimeInterval: 0.02) }
            if kill(-pid, SIGKILL) != 0 { kill(pid, SIGKILL) }
            p.waitUntilExit()
            return (false, "did not finish within \(Int(timeout)) s")
        }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? (true, "passed") : (false, "exited \(p.terminationStatus)")
    }
}
