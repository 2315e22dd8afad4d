import Foundation
import XCTest

/// llama.cpp's own GGUF writer (the `gguf` package from PyPI) in a test-only virtual
/// environment, made on first use; Tests/Helpers/make_gguf.py drives it.
public enum ReferenceGGUF {
    public static let venv = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/slmstore-gguf-venv"
    private static let lock = NSLock()
    nonisolated(unsafe) private static var ready: Bool?

    static func run(_ exe: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// The venv's python with `gguf` importable, or a skip when it cannot be made (no network).
    public static func python() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let python = venv + "/bin/python"
        if ready == nil {
            if run(python, ["-c", "import gguf, numpy"]) != 0 {
                _ = run("/usr/bin/env", ["python3", "-m", "venv", "--system-site-packages", venv])
                _ = run(python, ["-m", "pip", "install", "-q", "gguf"])
            }
            ready = run(python, ["-c", "import gguf, numpy"]) == 0
        }
        guard ready == true else { throw XCTSkip("cannot make a venv with the gguf package at \(venv) (pip install gguf failed)") }
        return python
    }

    /// Writes a model with Tests/Helpers/make_gguf.py (see its usage line).
    public static func write(_ path: String, type: String, seed: Int, extra: [String] = []) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Helpers/make_gguf.py").path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let status = run(try python(), [script, path, type, String(seed)] + extra)
        guard status == 0 else { throw NSError(domain: "make_gguf.py", code: Int(status)) }
    }
}
