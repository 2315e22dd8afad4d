import XCTest
import Foundation
@testable import SLMStoreKit
import SLMTestSupport

/// The remote is static files, so a caching reverse proxy in front of it serves a fleet (#29):
/// fifty devices behind nginx's proxy_cache with the slice module cost the origin about what
/// one device downloads.
final class SiteCacheTests: XCTestCase {
    func testFiftyDevicesBehindASiteCacheCostTheOriginAtMostOnePointTwoDevicesWorth() throws {
        let dir = TestSupport.scratch()
        let bytes = TestSupport.safetensors([("w", "BF16", [4 << 20], TestSupport.bf16Like(8 << 20, seed: 50))])
        TestSupport.write(bytes, to: dir + "/src/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "m@1.0.0", dir + "/src"], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote"], store: dir + "/publisher").status, 0)

        // What one device downloads, straight from an origin of its own.
        let alone = try NginxServer(serving: dir + "/remote")
        let first = TestSupport.cli(["pull", alone.url, "m@1.0.0", "--to", dir + "/dev-alone"], store: dir + "/edge-alone")
        XCTAssertEqual(first.status, 0, first.stderr)
        let oneDevice = alone.bodyBytesSent
        alone.stop()
        XCTAssertGreaterThan(oneDevice, 4 << 20)

        let origin = try NginxServer(serving: dir + "/remote")
        defer { origin.stop() }
        let cache = try NginxServer(serving: dir + "/remote", cacheFor: origin.port)
        defer { cache.stop() }
        // Five devices at a time, as a site's devices wake up around the same moment.
        let statuses = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 50)
        defer { statuses.deallocate() }
        nonisolated(unsafe) let out = statuses
        let cacheURL = cache.url
        DispatchQueue.concurrentPerform(iterations: 5) { lane in
            for i in stride(from: lane, to: 50, by: 5) {
                let r = TestSupport.cli(["pull", cacheURL, "m@1.0.0", "--to", "\(dir)/dev-\(i)"], store: "\(dir)/edge-\(i)")
                out[i] = r.status
                if r.status != 0 { print("device \(i): \(r.stderr)") }
            }
        }
        XCTAssertEqual(Array(statuses), [Int32](repeating: 0, count: 50))
        for i in [0, 17, 49] {
            XCTAssertSameBytes(TestSupport.read("\(dir)/dev-\(i)/current/model.safetensors"), bytes)
        }
        let egress = origin.bodyBytesSent
        XCTAssertLessThanOrEqual(Double(egress), 1.2 * Double(oneDevice),
                                 "the origin sent \(egress) bytes for 50 devices; one device alone downloads \(oneDevice)")
        XCTAssertGreaterThan(cache.bodyBytesSent, 40 * oneDevice, "the devices were served by the cache")
    }

    /// A new release reuses small records (norms a fine-tune left unchanged) that sit between
    /// large ones in the previous release's pack. Each costs the origin a whole slice, once for
    /// the fleet: with README's 256 KiB slices four of them stay within the bound, with 1 MiB
    /// slices they would not (4 MiB over a 12 MiB release).
    func testANewReleaseReusingSmallRecordsFromAnOlderPackCostsTheOriginAtMostOnePointTwoDevicesWorth() throws {
        let dir = TestSupport.scratch()
        func model(_ release: UInt64) -> [UInt8] {
            TestSupport.safetensors((0..<4).flatMap { i -> [(String, String, [Int], [UInt8])] in
                [("l\(i).norm", "BF16", [384], TestSupport.bf16Like(768, seed: 100 + UInt64(i))),
                 ("l\(i).w", "BF16", [2 << 20], TestSupport.bf16Like(4 << 20, seed: 10 * release + UInt64(i)))]
            })
        }
        for (release, version) in [(1, "1.0.0"), (2, "1.1.0")] {
            TestSupport.write(model(UInt64(release)), to: "\(dir)/r\(release)/model.safetensors")
            let add = TestSupport.cli(["add", "m@\(version)", "\(dir)/r\(release)", "--no-delta", "--json"], store: dir + "/publisher")
            XCTAssertEqual(add.status, 0, add.stderr)
            if release == 2 { XCTAssertTrue(add.stdout.contains("\"reused_chunks\":"), add.stdout) }
            XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "m@\(version)"], store: dir + "/publisher").status, 0)
        }

        let alone = try NginxServer(serving: dir + "/remote")
        let first = TestSupport.cli(["pull", alone.url, "m@1.1.0", "--to", dir + "/dev-alone"], store: dir + "/edge-alone")
        XCTAssertEqual(first.status, 0, first.stderr)
        let oneDevice = alone.bodyBytesSent
        alone.stop()

        let origin = try NginxServer(serving: dir + "/remote")
        defer { origin.stop() }
        let cache = try NginxServer(serving: dir + "/remote", cacheFor: origin.port)
        defer { cache.stop() }
        let statuses = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 20)
        defer { statuses.deallocate() }
        nonisolated(unsafe) let out = statuses
        let cacheURL = cache.url
        DispatchQueue.concurrentPerform(iterations: 5) { lane in
            for i in stride(from: lane, to: 20, by: 5) {
                let r = TestSupport.cli(["pull", cacheURL, "m@1.1.0", "--to", "\(dir)/dev-\(i)"], store: "\(dir)/edge-\(i)")
                out[i] = r.status
                if r.status != 0 { print("device \(i): \(r.stderr)") }
            }
        }
        XCTAssertEqual(Array(statuses), [Int32](repeating: 0, count: 20))
        XCTAssertSameBytes(TestSupport.read("\(dir)/dev-7/current/model.safetensors"), model(2))
        let egress = origin.bodyBytesSent
        XCTAssertLessThanOrEqual(Double(egress), 1.2 * Double(oneDevice),
                                 "the origin sent \(egress) bytes for 20 devices; one device alone downloads \(oneDevice)")
    }
}

