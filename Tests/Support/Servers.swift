import Foundation
import XCTest
import SLMStoreKit
import SLMSynthetic

/// Real servers for the delivery tests: nginx from Debian serving a directory on loopback, and
/// the fault-injecting proxy in front of it.
public final class NginxServer {
    public let root: String
    public let port: Int
    public let prefix: String
    private let process = Process()

    public var url: String { "http://127.0.0.1:\(port)" }

    /// `limitRate` (nginx syntax, e.g. "500k") slows every response, so a test can stop the
    /// server while a transfer is really in flight.
    public init(serving root: String, port fixedPort: Int? = nil, limitRate: String? = nil) throws {
        self.root = root
        self.port = fixedPort ?? freePort()
        prefix = TestSupport.scratch("nginx")
        try FileManager.default.createDirectory(atPath: prefix + "/tmp", withIntermediateDirectories: true)
        let conf = """
        \(getuid() == 0 ? "user root;" : "")
        daemon off;
        worker_processes 2;
        pid \(prefix)/nginx.pid;
        error_log \(prefix)/error.log warn;
        events { worker_connections 256; }
        http {
            access_log \(prefix)/access.log;
            client_body_temp_path \(prefix)/tmp/body;
            proxy_temp_path \(prefix)/tmp/proxy;
            fastcgi_temp_path \(prefix)/tmp/fastcgi;
            uwsgi_temp_path \(prefix)/tmp/uwsgi;
            scgi_temp_path \(prefix)/tmp/scgi;
            default_type application/octet-stream;
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                \(limitRate.map { "limit_rate \($0);" } ?? "")
                location / { }
            }
        }
        """
        try conf.write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: NginxServer.binary)
        process.arguments = ["-c", prefix + "/nginx.conf", "-p", prefix, "-e", prefix + "/error.log"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitForPort(port)
    }

    public static var binary: String {
        for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/sbin/nginx"
    }

    /// Requests nginx has logged so far (one line each).
    public var accessLog: [String] {
        ((try? String(contentsOfFile: prefix + "/access.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

public final class FaultProxy {
    public let port: Int
    private let process = Process()
    public var url: String { "http://127.0.0.1:\(port)" }

    public init(upstream: Int, mode: String, count: Int? = nil) throws {
        port = freePort()
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        dir.appendPathComponent("Helpers/fault_proxy.py")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", dir.path, String(port), String(upstream), mode] + (count.map { [String($0)] } ?? [])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitForPort(port)
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}

public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

public func waitForPort(_ port: Int, timeout: Double = 10) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
        close(fd)
        if ok { return }
        usleep(20_000)
    }
    throw SLMError.failed("server on port \(port) did not start")
}
