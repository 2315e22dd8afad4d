import XCTest
import Foundation
@testable import SLMStoreKit
import SLMTestSupport

/// A device on a link that keeps being cut (#29): the pull resumes each cut range where it
/// stopped, so it finishes and downloads barely more than a clean pull does.
final class FlakyLinkTests: XCTestCase {
    var dir = ""
    var nginx: NginxServer!

    /// Publishes `bytes` (bf16-like weights of that many bytes: they do not compress away) as
    /// m@1.0.0 on a remote nginx serves.
    func publish(_ count: Int) throws -> [UInt8] {
        dir = TestSupport.scratch()
        let bytes = TestSupport.safetensors([("w", "BF16", [count / 2], TestSupport.bf16Like(count, seed: 29))])
        TestSupport.write(bytes, to: dir + "/src/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "m@1.0.0", dir + "/src"], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote"], store: dir + "/publisher").status, 0)
        nginx = try NginxServer(serving: dir + "/remote")
        return bytes
    }

    override func tearDown() { nginx?.stop() }

    /// Pulls m@1.0.0 to a fresh device through a proxy that cuts the connection each time
    /// another `every` bytes went out, `cuts` times; returns the bytes it sent and the cuts made.
    func pull(cuts: Int, every: Int, name: String) throws -> (sent: Int, cuts: Int, result: TestSupport.Run) {
        let counter = dir + "/sent-\(name)"
        let proxy = try FaultProxy(upstream: nginx.port, mode: "cut-every", count: cuts,
                                   environment: ["FAULT_PROXY_CUT_EVERY": String(every), "FAULT_PROXY_SENT": counter])
        let r = TestSupport.cli(["pull", proxy.url, "m@1.0.0", "--to", "\(dir)/dev-\(name)"], store: "\(dir)/edge-\(name)")
        let fields = try String(contentsOfFile: counter, encoding: .utf8).split(whereSeparator: \.isWhitespace).map { Int($0)! }
        return (fields[0], fields[1], r)
    }

    func testAPullThroughTwentyCutsFinishesWithAtMostFivePercentMoreBytes() throws {
        let bytes = try publish(40 << 20)
        let clean = try pull(cuts: 0, every: 1 << 20, name: "clean")
        XCTAssertEqual(clean.result.status, 0, clean.result.stderr)
        XCTAssertGreaterThan(clean.sent, 20 << 20, "the model must be large enough for twenty cuts a MiB apart")
        let flaky = try pull(cuts: 20, every: 1 << 20, name: "flaky")
        XCTAssertEqual(flaky.result.status, 0, flaky.result.stderr)
        XCTAssertEqual(flaky.cuts, 20, "the link was cut twenty times")
        XCTAssertSameBytes(TestSupport.read(dir + "/dev-flaky/current/model.safetensors"), bytes)
        XCTAssertLessThanOrEqual(Double(flaky.sent), 1.05 * Double(clean.sent),
                                 "downloaded \(flaky.sent) bytes through 20 cuts, \(clean.sent) without")
    }

    /// Twenty cuts 256 KiB apart land in the first ranges, more often than the five tries a
    /// request gets: each try got further, so each starts the count again.
    func testARangeCutMoreOftenThanTheRetryBudgetStillCompletesWhileEachTryGetsFurther() throws {
        let bytes = try publish(12 << 20)
        let flaky = try pull(cuts: 20, every: 256 << 10, name: "flaky")
        XCTAssertEqual(flaky.result.status, 0, flaky.result.stderr)
        XCTAssertEqual(flaky.cuts, 20)
        XCTAssertSameBytes(TestSupport.read(dir + "/dev-flaky/current/model.safetensors"), bytes)
    }
}
