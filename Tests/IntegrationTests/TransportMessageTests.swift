import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMRemote
import SLMTestSupport

/// #45: a failure to reach a remote says where it failed and what fits the failure: the proxy
/// when it is the proxy, TLS spoken to a plain port, the failing URL once.
final class TransportMessageTests: XCTestCase {
    func testAFailureAtTheProxyNamesTheProxyAndWhereItCameFrom() throws {
        let dir = TestSupport.scratch()
        try FileSystem.makeDirectories(dir + "/remote")
        let nginx = try NginxServer(serving: dir + "/remote")
        defer { nginx.stop() }
        let r = TestSupport.cli(["pull", nginx.url, "m@1.0.0"], store: dir + "/store",
                                environment: ["http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("the proxy http://127.0.0.1:9 (from http_proxy)"), r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: nginx.url).count - 1, 1, "the URL once: \(r.stderr)")
    }

    func testHTTPSToAPlainPortSaysSo() throws {
        let dir = TestSupport.scratch()
        try FileSystem.makeDirectories(dir + "/remote")
        let nginx = try NginxServer(serving: dir + "/remote")
        defer { nginx.stop() }
        let url = nginx.url.replacingOccurrences(of: "http://", with: "https://")
        let r = TestSupport.cli(["pull", url, "m@1.0.0"], store: dir + "/store")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("did not answer in TLS") && r.stderr.contains("plain http:// port"), r.stderr)
        XCTAssertFalse(r.stderr.contains("--cacert"), "no CA hint for a port that does not speak TLS: \(r.stderr)")
    }

    func testProxyRulesFollowCurl() {
        let url = URL(string: "http://models.example.com/x")!
        XCTAssertEqual(HTTPClient.proxyInEffect(for: url, environment: ["http_proxy": "http://p:3128"])?.1, "http_proxy")
        XCTAssertNil(HTTPClient.proxyInEffect(for: url, environment: ["http_proxy": "http://p:3128", "NO_PROXY": ".example.com"]))
        XCTAssertNil(HTTPClient.proxyInEffect(for: url, environment: ["HTTP_PROXY": "http://p:3128"]), "curl ignores uppercase HTTP_PROXY")
        XCTAssertEqual(HTTPClient.proxyInEffect(for: URL(string: "https://h/x")!, environment: ["HTTPS_PROXY": "http://p"])?.1, "HTTPS_PROXY")
    }
}
