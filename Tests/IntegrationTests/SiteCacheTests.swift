import XCTest
import Foundation
@testable import SLMStoreKit
import SLMTestSupport

/// The remote is static files, so a caching reverse proxy in front of it serves a fleet (#29):
/// fifty devices behind nginx's proxy_cache with the slice module cost the origin about what
/// one device downloads.
final class SiteCacheTests: XCTestCase {
    /// What pulling `ref` from the remote in `dir` costs: one device straight from an origin of
    /// its own, then `devices` fresh devices through a site cache, five at a time (as a site's
    /// devices wake up around the same moment); each of those devices' exit status.
    private func pullThroughSiteCache(_ dir: String, ref: String, devices: Int) throws
        -> (oneDevice: Int, originSent: Int, cacheSent: Int, statuses: [Int32]) {
        let alone = try NginxServer(serving: dir + "/remote")
        let first = TestSupport.cli(["pull", alone.url, ref, "--to", dir + "/dev-alone"], store: dir + "/edge-alone")
        XCTAssertEqual(first.status, 0, first.stderr)
        let oneDevice = alone.bodyBytesSent
        alone.stop()

        let origin = try NginxServer(serving: dir + "/remote")
        defer { origin.stop() }
        let cache = try NginxServer(serving: dir + "/remote", cacheFor: origin.port)
        defer { cache.stop() }
        let statuses = UnsafeMutableBufferPointer<Int32>.allocate(capacity: devices)
        defer { statuses.deallocate() }
        nonisolated(unsafe) let out = statuses
        let cacheURL = cache.url
        DispatchQueue.concurrentPerform(iterations: 5) { lane in
            for i in stride(from: lane, to: devices, by: 5) {
                let r = TestSupport.cli(["pull", cacheURL, ref, "--to", "\(dir)/dev-\(i)"], store: "\(dir)/edge-\(i)")
                out[i] = r.status
                if r.status != 0 { print("device \(i): \(r.stderr)") }
            }
        }
        return (oneDevice, origin.bodyBytesSent, cache.bodyBytesSent, Array(statuses))
    }

    func testFiftyDevicesBehindASiteCacheCostTheOriginAtMostOnePointTwoDevicesWorth() throws {
        let dir = TestSupport.scratch()
        let bytes = TestSupport.safetensors([("w", "BF16", [4 << 20], TestSupport.bf16Like(8 << 20, seed: 50))])
        TestSupport.write(bytes, to: dir + "/src/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "m@1.0.0", dir + "/src"], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote"], store: dir + "/publisher").status, 0)

        let fleet = try pullThroughSiteCache(dir, ref: "m@1.0.0", devices: 50)
        XCTAssertGreaterThan(fleet.oneDevice, 4 << 20)
        XCTAssertEqual(fleet.statuses, [Int32](repeating: 0, count: 50))
        for i in [0, 17, 49] {
            XCTAssertSameBytes(TestSupport.read("\(dir)/dev-\(i)/current/model.safetensors"), bytes)
        }
        XCTAssertLessThanOrEqual(Double(fleet.originSent), 1.2 * Double(fleet.oneDevice),
                                 "the origin sent \(fleet.originSent) bytes for 50 devices; one device alone downloads \(fleet.oneDevice)")
        XCTAssertGreaterThan(fleet.cacheSent, 40 * fleet.oneDevice, "the devices were served by the cache")
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
            if release == 2 {
                // The four norms are release 1's records.
                let reused = (try JSONSerialization.jsonObject(with: Data(add.stdout.utf8)) as? [String: Any])?["reused_chunks"] as? Int
                XCTAssertGreaterThanOrEqual(reused ?? 0, 4, add.stdout)
            }
            XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "m@\(version)"], store: dir + "/publisher").status, 0)
        }

        let fleet = try pullThroughSiteCache(dir, ref: "m@1.1.0", devices: 20)
        XCTAssertEqual(fleet.statuses, [Int32](repeating: 0, count: 20))
        XCTAssertSameBytes(TestSupport.read("\(dir)/dev-7/current/model.safetensors"), model(2))
        XCTAssertLessThanOrEqual(Double(fleet.originSent), 1.2 * Double(fleet.oneDevice),
                                 "the origin sent \(fleet.originSent) bytes for 20 devices; one device alone downloads \(fleet.oneDevice)")
    }
}
