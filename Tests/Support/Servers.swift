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

    public var url: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)" }
    let tls: TLS?

    /// HTTPS with this certificate; with `clientCA`, a client certificate that CA signed is
    /// required (`ssl_verify_client on`): nginx answers 400 to a client without one.
    public struct TLS {
        public var certificate: String
        public var key: String
        public var clientCA: String?
        public init(certificate: String, key: String, clientCA: String? = nil) {
            (self.certificate, self.key, self.clientCA) = (certificate, key, clientCA)
        }
    }

    /// `limitRate` (nginx syntax, e.g. "500k") slows every response, so a test can stop the
    /// server while a transfer is really in flight.
    /// A private remote: nginx's own basic auth (a user file) or a bearer token it compares.
    public enum Auth {
        case basic(user: String, password: String)
        case bearer(String)
        /// Not auth: every request is redirected to this base URL (same path).
        case redirect(to: String)
    }

    /// `acceptPut`: nginx's WebDAV PUT (creating directories), as a device-report sink.
    /// `cacheFor`: instead of serving `root`, a site cache in front of the origin on that port,
    /// configured as README's "CDN and site caches" says: the immutable paths (packs, objects,
    /// delta sets, version refs) cached for long in 256 KiB slices (nginx's slice module, so a
    /// range request fills the cache slice by slice), everything else for 5 s.
    public init(serving root: String, port fixedPort: Int? = nil, limitRate: String? = nil, auth: Auth? = nil, tls: TLS? = nil,
                acceptPut: Bool = false, cacheFor upstream: Int? = nil) throws {
        self.root = root
        self.tls = tls
        self.port = fixedPort ?? freePort()
        prefix = TestSupport.scratch("nginx")
        try FileManager.default.createDirectory(atPath: prefix + "/tmp", withIntermediateDirectories: true)
        var location = ""
        switch auth {
        case let .basic(user, password)?:
            try "\(user):{PLAIN}\(password)\n".write(toFile: prefix + "/htpasswd", atomically: true, encoding: .utf8)
            location = "auth_basic \"slmstore\"; auth_basic_user_file \(prefix)/htpasswd;"
        case let .bearer(token)?:
            location = "if ($http_authorization != \"Bearer \(token)\") { add_header WWW-Authenticate Bearer always; return 401; }"
        case let .redirect(to)?:
            location = "return 302 \(to)$request_uri;"
        case nil:
            break
        }
        var locations = "location / { \(location) \(acceptPut ? "dav_methods PUT; create_full_put_path on; dav_access user:rw group:r all:r;" : "") }"
        var cachePath = ""
        if let upstream {
            cachePath = "proxy_cache_path \(prefix)/cache levels=1:2 keys_zone=slm:10m max_size=2g inactive=1h use_temp_path=off;"
            let common = "proxy_pass http://127.0.0.1:\(upstream); proxy_http_version 1.1; proxy_cache slm; proxy_cache_lock on; proxy_cache_lock_timeout 120s; proxy_cache_lock_age 120s;"
            locations = """
                location ~ ^/(packs|objects|deltas)/|/@versions/ {
                    slice 256k;
                    proxy_cache_key $uri$slice_range;
                    proxy_set_header Range $slice_range;
                    proxy_cache_valid 200 206 30d;
                    \(common)
                }
                location / { proxy_cache_valid 200 5s; \(common) }
            """
        }
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
            \(cachePath)
            server {
                listen 127.0.0.1:\(port)\(tls == nil ? "" : " ssl");
                \(tls.map { "ssl_certificate \($0.certificate); ssl_certificate_key \($0.key);" } ?? "")
                \(tls?.clientCA.map { "ssl_client_certificate \($0); ssl_verify_client on;" } ?? "")
                root \(root);
                \(limitRate.map { "limit_rate \($0);" } ?? "")
                \(locations)
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

    /// Response body bytes nginx has sent so far (the combined log's $body_bytes_sent).
    public var bodyBytesSent: Int {
        accessLog.reduce(0) { sum, line in
            guard let r = line.range(of: #"" \d{3} (\d+) ""#, options: .regularExpression) else { return sum }
            return sum + (Int(line[r].split(separator: " ")[2]) ?? 0)
        }
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

    /// With `log`, the path and Range header of each range request are appended to that file.
    /// `environment` adds to the proxy's (FAULT_PROXY_CUT_EVERY, FAULT_PROXY_SENT: see the script).
    public init(upstream: Int, mode: String, count: Int? = nil, log: String? = nil, environment: [String: String] = [:]) throws {
        port = freePort()
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        dir.appendPathComponent("Helpers/fault_proxy.py")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", dir.path, String(port), String(upstream), mode] + (count.map { [String($0)] } ?? [])
        var extra = environment
        if let log { extra["FAULT_PROXY_LOG"] = log }
        if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitForPort(port)
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}

/// A forward proxy (Helpers/connect_proxy.py): CONNECT tunnels and absolute-form requests,
/// each target logged, so a test sees whether a client went through it.
public final class ConnectProxy {
    public let port: Int
    public let log: String
    private let process = Process()
    public var url: String { "http://127.0.0.1:\(port)" }

    public init() throws {
        port = freePort()
        log = TestSupport.scratch("proxy") + "/requests.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        dir.appendPathComponent("Helpers/connect_proxy.py")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", dir.path, String(port), log]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitForPort(port)
    }

    public var requests: [String] {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}

/// A private PKI made with the openssl command: a CA, a server certificate for 127.0.0.1 and
/// localhost, a client certificate the CA signed, and one from an unrelated CA.
public struct TestPKI {
    public let dir: String
    public var caCertificate: String { dir + "/ca.pem" }
    public var serverCertificate: String { dir + "/server.pem" }
    public var serverKey: String { dir + "/server.key" }
    public var clientCertificate: String { dir + "/client.pem" }
    public var clientKey: String { dir + "/client.key" }
    public var strangerCertificate: String { dir + "/stranger.pem" }
    public var strangerKey: String { dir + "/stranger.key" }

    public init() throws {
        dir = TestSupport.scratch("pki")
        func openssl(_ args: [String]) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = args
            p.currentDirectoryURL = URL(fileURLWithPath: dir)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw SLMError.failed("openssl \(args.joined(separator: " ")) failed") }
        }
        for ca in ["ca", "otherca"] {
            try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(ca).key",
                         "-out", "\(ca).pem", "-days", "2", "-subj", "/CN=slmstore test \(ca)"])
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        for (name, ca, ext) in [("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("stranger", "otherca", "client.ext")] {
            try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(name).key",
                         "-out", "\(name).csr", "-subj", "/CN=\(name)"])
            try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key", "-CAcreateserial",
                         "-out", "\(name).pem", "-days", "2", "-extfile", ext])
        }
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

/// moto's S3 server on loopback with authentication on: the first three requests (create an
/// IAM user, give it an S3 policy, create its access key) run unauthenticated, as
/// INITIAL_NO_AUTH_ACTION_COUNT allows; every later request must be signed with that key, so a
/// wrong secret or a mangled signature is refused by the server itself.
public final class MotoS3Server {
    public let port: Int
    public let accessKeyID: String
    public let secretAccessKey: String
    private let process = Process()

    public var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Environment for a client using this server's key (and nothing from the developer's ~/.aws).
    public var clientEnvironment: [String: String] {
        ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_ENDPOINT_URL": endpoint, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"]
    }

    public static var isAvailable: Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/moto_server")
        } && (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/aws")
        }
    }

    public init(buckets: [String]) throws {
        port = freePort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["moto_server", "-H", "127.0.0.1", "-p", String(port)]
        var env = ProcessInfo.processInfo.environment
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        try waitForPort(port, timeout: 30)
        let bootstrap = ["AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"]
        let endpoint = "http://127.0.0.1:\(port)"
        _ = try MotoS3Server.aws(["iam", "create-user", "--user-name", "publisher"], endpoint: endpoint, env: bootstrap)
        // The publisher may also make IAM users, so tests can hand devices narrower credentials.
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","iam:*"],"Resource":"*"}]}"#
        _ = try MotoS3Server.aws(["iam", "put-user-policy", "--user-name", "publisher", "--policy-name", "s3", "--policy-document", policy],
                                 endpoint: endpoint, env: bootstrap)
        let key = try JSONValue.parse(Array(try MotoS3Server.aws(["iam", "create-access-key", "--user-name", "publisher"],
                                                                   endpoint: endpoint, env: bootstrap).utf8))
        guard let id = key["AccessKey"]?["AccessKeyId"]?.stringValue, let secret = key["AccessKey"]?["SecretAccessKey"]?.stringValue else {
            throw SLMError.failed("moto did not return an access key")
        }
        accessKeyID = id
        secretAccessKey = secret
        for b in buckets { _ = try aws(["s3api", "create-bucket", "--bucket", b]) }
    }

    /// A new IAM user holding only `policy` (a JSON policy document): the environment of a client
    /// using its key, as a device given its own credential would.
    public func credentials(user: String, policy: String) throws -> [String: String] {
        try aws(["iam", "create-user", "--user-name", user])
        try aws(["iam", "put-user-policy", "--user-name", user, "--policy-name", "device", "--policy-document", policy])
        let key = try JSONValue.parse(Array(try aws(["iam", "create-access-key", "--user-name", user]).utf8))
        guard let id = key["AccessKey"]?["AccessKeyId"]?.stringValue, let secret = key["AccessKey"]?["SecretAccessKey"]?.stringValue else {
            throw SLMError.failed("moto did not return an access key for \(user)")
        }
        var env = clientEnvironment
        (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) = (id, secret)
        return env
    }

    /// Runs the aws CLI against this server with `env`'s key; returns stdout, throws on failure.
    @discardableResult
    public func aws(_ args: [String], env: [String: String], input: String? = nil) throws -> String {
        try MotoS3Server.aws(args, endpoint: endpoint, env: env, input: input)
    }

    /// Runs the aws CLI against this server with its key; returns stdout, throws on failure.
    @discardableResult
    public func aws(_ args: [String], input: String? = nil) throws -> String {
        try MotoS3Server.aws(args, endpoint: endpoint, env: clientEnvironment, input: input)
    }

    static func aws(_ args: [String], endpoint: String, env extra: [String: String], input: String? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["aws", "--endpoint-url", endpoint, "--output", "json"] + args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let stdin = Pipe()
        p.standardInput = stdin
        try p.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw SLMError.failed("aws \(args.joined(separator: " ")) failed: \(String(decoding: errData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    public func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }

    deinit { stop() }
}
