import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Private remotes behind nginx's own authentication: bearer tokens, ~/.netrc and URL
/// credentials work, a refusal fails at once naming the source tried, and no secret is ever
/// printed, logged or stored. Slow and silent servers cannot hold a request or a daemon.
final class PrivateRemoteTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        let src = dir + "/src"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [500_000], TestSupport.bf16Like(1_000_000, seed: 3))]), to: src + "/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "intent@1.0.0", src], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["promote", "intent@1.0.0", "production", "--skip-staging"], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
    }

    func pull(_ url: String, _ extra: [String] = [], env: [String: String] = [:]) -> (TestSupport.Run, Double) {
        let start = Date()
        let r = TestSupport.cli(["pull", url, "intent@1.0.0", "--json"] + extra, store: dir + "/edge-\(FileSystem.randomHex(3))",
                                environment: ["HOME": dir + "/home"].merging(env) { $1 })
        return (r, Date().timeIntervalSince(start))
    }

    func testABearerTokenFromTheEnvironmentOrAFileOpensAPrivateRemote() throws {
        let token = "tok-\(FileSystem.randomHex(8))"
        let nginx = try NginxServer(serving: remote, auth: .bearer(token))
        defer { nginx.stop() }
        let (none, seconds) = pull(nginx.url)
        XCTAssertEqual(none.status, 6)
        XCTAssertTrue(none.stderr.contains("HTTP 401") && none.stderr.contains("no credentials were sent"), none.stderr)
        XCTAssertLessThan(seconds, 10, "a 401 fails at once, without retries")
        XCTAssertEqual(pull(nginx.url, env: ["SLMSTORE_TOKEN": token]).0.status, 0)
        TestSupport.write(Array((token + "\n").utf8), to: dir + "/token")
        XCTAssertEqual(pull(nginx.url, ["--token-file", dir + "/token"]).0.status, 0)
        let (wrong, _) = pull(nginx.url, env: ["SLMSTORE_TOKEN": "not-" + token])
        XCTAssertEqual(wrong.status, 6)
        XCTAssertTrue(wrong.stderr.contains("credentials from SLMSTORE_TOKEN were refused"), wrong.stderr)
        XCTAssertFalse(wrong.stderr.contains(token) || wrong.stdout.contains(token))
    }

    /// A redirect to another host does not take the token along: the other host sees no
    /// Authorization (it answers 401), while the same token sent to it directly works.
    func testCredentialsAreNotForwardedToAnotherHostOnARedirect() throws {
        let token = "tok-\(FileSystem.randomHex(8))"
        let target = try NginxServer(serving: remote, auth: .bearer(token))
        defer { target.stop() }
        let redirector = try NginxServer(serving: remote, auth: .redirect(to: "http://localhost:\(target.port)"))
        defer { redirector.stop() }
        XCTAssertEqual(pull("http://localhost:\(target.port)", env: ["SLMSTORE_TOKEN": token]).0.status, 0)
        let (r, _) = pull(redirector.url, env: ["SLMSTORE_TOKEN": token])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("HTTP 401"), r.stderr)
    }

    /// Finding 7: a 401 with a Basic challenge used to hang a pull for 300 s.
    func testNetrcSuppliesBasicCredentialsPerHostAndARefusalFailsAtOnce() throws {
        let nginx = try NginxServer(serving: remote, auth: .basic(user: "device", password: "s3cret-pw"))
        defer { nginx.stop() }
        TestSupport.write(Array("machine other.example login x password y\nmachine 127.0.0.1\n  login device\n  password s3cret-pw\n".utf8),
                          to: dir + "/home/.netrc")
        let (ok, _) = pull(nginx.url)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        TestSupport.write(Array("default login device password wrong-pw\n".utf8), to: dir + "/netrc-wrong")
        let (refused, seconds) = pull(nginx.url, ["--netrc-file", dir + "/netrc-wrong"])
        XCTAssertEqual(refused.status, 6)
        XCTAssertTrue(refused.stderr.contains("credentials from \(dir)/netrc-wrong (default) were refused"), refused.stderr)
        XCTAssertLessThan(seconds, 10)
        XCTAssertFalse(refused.stderr.contains("wrong-pw"))
    }

    /// Finding 10: a user:password URL works, and the password appears nowhere: not in output,
    /// errors, sync's log lines, `status`, or any file the device writes.
    func testCredentialsInTheURLAreUsedButNeverPrintedLoggedOrStored() throws {
        let nginx = try NginxServer(serving: remote, auth: .basic(user: "device", password: "hunter2-secret"))
        defer { nginx.stop() }
        let url = "http://device:hunter2-secret@127.0.0.1:\(nginx.port)"
        let (r, _) = pull(url)
        XCTAssertEqual(r.status, 0, r.stderr)
        let missing = TestSupport.cli(["pull", url, "intent@9.9.9"], store: dir + "/edge-missing")
        XCTAssertEqual(missing.status, 3)
        let device = dir + "/device"
        let sync = TestSupport.cli(["sync", url, "--to", device, "--follow", "intent@production", "--once", "--log-format", "json"])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        let status = TestSupport.cli(["status", "--to", device, "--json"])
        for text in [r.stdout, r.stderr, missing.stderr, sync.stdout, sync.stderr, status.stdout] {
            XCTAssertFalse(text.contains("hunter2"), text)
        }
        XCTAssertTrue(status.stdout.contains("127.0.0.1:\(nginx.port)"), status.stdout)
        let files = FileManager.default.enumerator(atPath: device)!.compactMap { $0 as? String }
        for f in files where FileSystem.isRegularFile(device + "/" + f) && (FileSystem.fileSize(device + "/" + f) ?? 0) < 1 << 20 {
            XCTAssertFalse(String(decoding: TestSupport.read(device + "/" + f), as: UTF8.self).contains("hunter2"), f)
        }
    }

    /// Finding 7: SIGTERM used to wait for a request in flight to end.
    func testSIGTERMStopsSyncWithinASecondWhileARequestTrickles() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let proxy = try FaultProxy(upstream: nginx.port, mode: "trickle")
        let device = dir + "/device"
        let log = dir + "/sync.log"
        let d = try SyncTests.Daemon(["sync", proxy.url, "--to", device, "--follow", "intent@production", "--log-format", "json"], log: log)
        // Wait until the daemon is inside a (trickling) range request.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\"start\"")) { usleep(50_000) }
        sleep(2)
        XCTAssertTrue(d.process.isRunning)
        let stopAt = Date()
        d.process.terminate()
        d.process.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(stopAt), 1.5)
        XCTAssertNil(InstallDirectory(root: device + "/intent").current())
    }
}
