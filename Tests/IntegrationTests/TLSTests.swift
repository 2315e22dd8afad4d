import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// Private PKI through libcurl against a real nginx: a remote whose certificate a private CA
/// signed is trusted only when that CA is named; a remote that requires client certificates
/// (mutual TLS) installs only on a device that presents one its CA signed; a site proxy named
/// by HTTPS_PROXY carries the traffic unless NO_PROXY exempts the host.
final class TLSTests: XCTestCase {
    var dir = ""
    var remote = ""
    var pki: TestPKI!

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        remote = dir + "/remote"
        pki = try TestPKI()
        let src = dir + "/src"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [100_000], TestSupport.bf16Like(200_000, seed: 3))]), to: src + "/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "intent@1.0.0", src], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: dir + "/publisher").status, 0)
    }

    func pull(_ url: String, device: String, _ extra: [String] = [], env: [String: String] = [:]) -> TestSupport.Run {
        TestSupport.cli(["pull", url, "intent@1.0.0", "--to", device + "/install"] + extra, store: device + "/store", environment: env)
    }

    func installed(_ device: String) -> String? { InstallDirectory(root: device + "/install").current() }

    func testAPrivateCAIsTrustedOnlyWhenNamed() throws {
        let nginx = try NginxServer(serving: remote, tls: .init(certificate: pki.serverCertificate, key: pki.serverKey))
        defer { nginx.stop() }
        let refused = pull(nginx.url, device: dir + "/d1")
        XCTAssertEqual(refused.status, 6, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("TLS") && refused.stderr.contains("--cacert"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertNil(installed(dir + "/d1"))
        let named = pull(nginx.url, device: dir + "/d1", ["--cacert", pki.caCertificate])
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertEqual(installed(dir + "/d1"), "1.0.0")
        let fromEnvironment = pull(nginx.url, device: dir + "/d2", env: ["SLMSTORE_CA_BUNDLE": pki.caCertificate])
        XCTAssertEqual(fromEnvironment.status, 0, fromEnvironment.stderr)
        // Another CA's bundle does not vouch for this server.
        XCTAssertEqual(pull(nginx.url, device: dir + "/d3", ["--cacert", pki.dir + "/otherca.pem"]).status, 6)
    }

    func testMutualTLSInstallsOnlyOnADeviceWithACertificateItsCASigned() throws {
        let nginx = try NginxServer(serving: remote, tls: .init(certificate: pki.serverCertificate, key: pki.serverKey, clientCA: pki.caCertificate))
        defer { nginx.stop() }
        let ca = ["--cacert", pki.caCertificate]
        let without = pull(nginx.url, device: dir + "/d", ca)
        XCTAssertNotEqual(without.status, 0)
        XCTAssertTrue(without.stderr.contains("HTTP 400"), without.stderr)
        let stranger = pull(nginx.url, device: dir + "/d", ca + ["--cert", pki.strangerCertificate, "--key", pki.strangerKey])
        XCTAssertNotEqual(stranger.status, 0)
        XCTAssertNil(installed(dir + "/d"))
        let with = pull(nginx.url, device: dir + "/d", ca + ["--cert", pki.clientCertificate, "--key", pki.clientKey])
        XCTAssertEqual(with.status, 0, with.stderr)
        XCTAssertEqual(installed(dir + "/d"), "1.0.0")
        // The sync daemon takes the same files from its configuration file.
        let conf = dir + "/sync.conf"
        TestSupport.write(Array("""
        remote = \(nginx.url)
        to = \(dir)/sync
        follow = intent@^1
        cacert = \(pki.caCertificate)
        cert = \(pki.clientCertificate)
        key = \(pki.clientKey)

        """.utf8), to: conf)
        let sync = TestSupport.cli(["sync", "--config", conf, "--once", "--store", dir + "/sync-store"])
        XCTAssertEqual(sync.status, 0, sync.stdout + sync.stderr)
        XCTAssertEqual(InstallDirectory(root: dir + "/sync/intent").current(), "1.0.0")
    }

    func testAnUnreadableTLSFileIsAOneLineErrorNamingIt() throws {
        let r = pull("https://127.0.0.1:9", device: dir + "/d", ["--cacert", dir + "/missing.pem"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(dir + "/missing.pem") && r.stderr.contains("--cacert"), r.stderr)
        let keyOnly = pull("https://127.0.0.1:9", device: dir + "/d", ["--key", pki.clientKey])
        XCTAssertEqual(keyOnly.status, 2, keyOnly.stderr)
    }

    func testHTTPSProxyCarriesTheTrafficUnlessNoProxyExemptsTheHost() throws {
        let nginx = try NginxServer(serving: remote, tls: .init(certificate: pki.serverCertificate, key: pki.serverKey))
        defer { nginx.stop() }
        let proxy = try ConnectProxy()
        let through = pull(nginx.url, device: dir + "/d1", ["--cacert", pki.caCertificate], env: ["HTTPS_PROXY": proxy.url])
        XCTAssertEqual(through.status, 0, through.stderr)
        XCTAssertTrue(proxy.requests.contains("CONNECT 127.0.0.1:\(nginx.port)"), "\(proxy.requests)")
        let before = proxy.requests.count
        let exempt = pull(nginx.url, device: dir + "/d2", ["--cacert", pki.caCertificate],
                          env: ["HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"])
        XCTAssertEqual(exempt.status, 0, exempt.stderr)
        XCTAssertEqual(proxy.requests.count, before, "\(proxy.requests)")
    }
}
