import Foundation
import XCTest
import SLMStoreKit
import SLMSynthetic

/// Shared helpers: scratch directories, the built `slmstore` binary, store snapshots.
public enum TestSupport {
    /// Scratch directories of earlier runs (over an hour old) go when the first one of this run is
    /// made: a full suite writes gigabytes, and a machine that runs it often would fill its disk.
    private static let sweptOldScratch: Void = {
        let root = NSTemporaryDirectory() + "slmstore-tests"
        let cutoff = Date().addingTimeInterval(-3600)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            let path = root + "/" + name
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, modified < cutoff {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }()

    public static func scratch(_ name: String = #function) -> String {
        _ = sweptOldScratch
        let clean = name.filter { $0.isLetter || $0.isNumber }
        let dir = NSTemporaryDirectory() + "slmstore-tests/\(clean)-\(FileSystem.randomHex(4))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The `slmstore` executable built beside the test bundle.
    public static var binary: String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("slmstore").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        for b in Bundle.allBundles {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("slmstore").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        fatalError("slmstore binary not found next to the tests; run `swift build` first")
    }

    public struct Run {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs the CLI to completion.
    @discardableResult
    public static func cli(_ args: [String], store: String? = nil, environment: [String: String] = [:], cwd: String? = nil) -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.arguments = (store.map { ["--store", $0] } ?? []) + args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try! p.run()
        // Drain both pipes concurrently so a chatty child never blocks.
        nonisolated(unsafe) var errData = Data()
        let t = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while t.isExecuting || !t.isFinished { usleep(1000) }
        return Run(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self))
    }

    public static func json(_ run: Run) throws -> JSONValue { try JSONValue.parse(run.stdout) }

    /// Debian's chromium, when installed: the registry pages are read by a real browser.
    public static let chromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs headless chromium with `args` (a profile under `profile`) and returns what it printed
    /// (`--dump-dom URL`: the DOM after scripts ran).
    public static func browser(_ args: [String], profile: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: chromium!)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile)"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Starts the CLI in the background (output discarded) for tests that race or kill it.
    public static func spawn(_ args: [String], store: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--store", store] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Kills `p` with SIGKILL and reaps it. Foundation's `waitUntilExit` can miss the exit of a
    /// child killed moments after it started (seen here: the child a zombie, the test blocked
    /// for good), so after a grace period the child is reaped here directly.
    public static func killAndReap(_ p: Process, grace: Double = 20) {
        kill(p.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(grace)
        while p.isRunning && Date() < deadline { usleep(5_000) }
        if p.isRunning {
            var status: Int32 = 0
            _ = waitpid(p.processIdentifier, &status, 0)
        }
    }

    /// Every file below `dir` with its content digest: a store "byte for byte".
    public static func snapshot(_ dir: String) -> [String: String] {
        var out: [String: String] = [:]
        let e = FileManager.default.enumerator(atPath: dir)
        while let rel = e?.nextObject() as? String {
            let path = dir + "/" + rel
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
            if isDir.boolValue { out[rel + "/"] = "dir"; continue }
            let data = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
            out[rel] = SHA256Hasher.hash(Array(data)).hex
        }
        return out
    }

    public static func write(_ bytes: [UInt8], to path: String) {
        try! FileManager.default.createDirectory(atPath: FileSystem.dirname(path), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    /// Flips one bit in place, as bit rot would (same inode, so open descriptors see it too).
    public static func flipByte(in path: String, at offset: UInt64) {
        let f = try! FileDescriptor(path: path, flags: O_RDWR)
        var b = try! f.pread(count: 1, at: offset)
        b[0] ^= 0x40
        _ = b.withUnsafeBytes { pwrite(f.fd, $0.baseAddress, 1, off_t(offset)) }
    }

    /// The manifest a path remote publishes, with every model's entries file loaded and checked.
    public static func publishedManifest(_ remote: String) throws -> Manifest {
        try RemoteReader(remote: LocalBackend(root: remote), cacheDirectory: nil).manifest(models: nil)
    }

    /// Rewrites a path remote's manifest as a publisher (or a hostile remote) would: every entries
    /// file loaded, changed by `change`, written again with a manifest.json naming the new files.
    public static func rewriteManifest(_ remote: String, _ change: (inout Manifest) throws -> Void) throws {
        var m = try publishedManifest(remote)
        try change(&m)
        let (top, entries) = m.encodedFiles()
        for (path, bytes) in entries { write(bytes, to: remote + "/" + path) }
        write(top, to: remote + "/manifest.json")
    }

    /// A path remote's manifest written again in format 1 (one file), as an older publisher wrote it.
    public static func downgradeManifestToFormatOne(_ remote: String) throws {
        guard case var .object(top) = try JSONValue.parse(read(remote + "/manifest.json")),
              case var .object(models) = top["models"]! else { throw SLMError.failed("manifest") }
        for (name, entry) in models {
            guard case var .object(e) = entry, let path = e["entries"]?["path"]?.stringValue else { continue }
            e["versions"] = try JSONValue.parse(read(remote + "/" + path))["versions"]
            e["entries"] = nil
            for key in ["version_count", "versions_sha256", "latest_size", "last_created"] { e[key] = nil }
            models[name] = .object(e)
        }
        top["models"] = .object(models)
        top["format"] = .int(1)
        write(Array(JSONValue.object(top).prettyString().utf8) + [0x0a], to: remote + "/manifest.json")
    }

    /// Copies a directory tree with `cp -a` (modes and times kept), as a second store to compare.
    public static func copyTree(_ source: String, to target: String) {
        let cp = Process()
        cp.executableURL = URL(fileURLWithPath: "/bin/cp")
        cp.arguments = ["-a", source, target]
        try! cp.run()
        cp.waitUntilExit()
        precondition(cp.terminationStatus == 0, "cp -a \(source) \(target) failed")
    }

    public static func read(_ path: String) -> [UInt8] {
        Array((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data())
    }

    public static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed)
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            let v = rng.next()
            for k in 0..<8 where i + k < count { out[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            i += 8
        }
        return out
    }

    /// bf16 values ~ N(0, 0.02): the byte statistics of real weights.
    public static func bf16Like(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed)
        var out = [UInt8](repeating: 0, count: count)
        for i in stride(from: 0, to: count - 1, by: 2) {
            let b = SyntheticModel.bf16(0.02 * rng.gaussian())
            out[i] = UInt8(b & 0xff)
            out[i + 1] = UInt8(b >> 8)
        }
        return out
    }

    /// A safetensors file from (name, dtype, shape, bytes) tensors in order.
    public static func safetensors(_ tensors: [(String, String, [Int], [UInt8])], metadata: [String: String]? = nil) -> [UInt8] {
        var entries: [String: JSONValue] = [:]
        var offset = 0
        for (name, dtype, shape, data) in tensors {
            entries[name] = .object(["dtype": .string(dtype), "shape": .array(shape.map { .int($0) }),
                                     "data_offsets": .array([.int(offset), .int(offset + data.count)])])
            offset += data.count
        }
        if let metadata { entries["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        return rawSafetensors(header: JSONValue.object(entries).canonicalBytes(), data: tensors.flatMap { $0.3 })
    }

    public static func rawSafetensors(header: [UInt8], data: [UInt8]) -> [UInt8] {
        let length = UInt64(header.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + header + data
    }
}

/// Compares byte arrays by length and digest, so a failure prints two lines, not megabytes.
public func XCTAssertSameBytes(_ a: [UInt8], _ b: [UInt8], _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "length differs \(message)", file: file, line: line)
    XCTAssertEqual(SHA256Hasher.hash(a).hex, SHA256Hasher.hash(b).hex, "content differs \(message)", file: file, line: line)
}

public func XCTAssertSameFiles(_ a: [String: [UInt8]], _ b: [String: [UInt8]], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
    for (k, v) in a { XCTAssertSameBytes(v, b[k] ?? [], k, file: file, line: line) }
}

/// Small thread-safe values for tests that watch a background process.
public final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    public init() {}
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    public func set() { lock.lock(); flag = true; lock.unlock() }
}

public final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    public init() {}
    public var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    public func add() { lock.lock(); n += 1; lock.unlock() }
}

/// Ids for the planner tests, which need distinct chunks and packs but no bytes behind them.
public enum PlanFixtures {
    public static func chunk(_ n: UInt8) -> ChunkID { ChunkID(of: [n, n, n]) }
    public static let packA = PackID(hex: String(repeating: "a", count: 32))!
    public static let packB = PackID(hex: String(repeating: "b", count: 32))!
}
