import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// #29 (device reports and the fleet view): each sync round leaves a small report on the
/// remote (or PUTs it to a report URL), and `slmstore fleet` counts who runs, goes for, rejects
/// or fails on each version, from real daemons' reports.
final class FleetTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        for (v, seed) in [("1.0.0", UInt64(1)), ("1.1.0", UInt64(2))] {
            TestSupport.write(TestSupport.safetensors([("w", "BF16", [50_000], TestSupport.bf16Like(100_000, seed: seed))]), to: "\(dir)/src-\(v)/model.safetensors")
            XCTAssertEqual(TestSupport.cli(["add", "intent@\(v)", "\(dir)/src-\(v)"], store: publisher).status, 0)
        }
        promote("1.0.0")
    }

    func promote(_ v: String) {
        XCTAssertEqual(TestSupport.cli(["promote", "intent@\(v)", "production", "--skip-staging", "--allow-breaking"], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--no-web"], store: publisher).status, 0)
    }

    @discardableResult
    func sync(_ device: String, from url: String? = nil, _ extra: [String] = [], env: [String: String] = [:]) -> TestSupport.Run {
        TestSupport.cli(["sync", url ?? remote, "--to", "\(dir)/\(device)", "--follow", "intent@production", "--once", "--device-id", device,
                         "--store", "\(dir)/\(device)-store", "--keep", "2"] + extra, environment: env)
    }

    func fleet(_ extra: [String] = []) throws -> JSONValue {
        let r = TestSupport.cli(["fleet", remote, "--json"] + extra, store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.json(r)
    }

    /// The publisher enrolls devices by the keys of the reports they left (#42).
    func enroll(_ devices: [String], remote: String? = nil) {
        let r = TestSupport.cli(["device", "enroll", remote ?? self.remote] + devices, store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testReportsFromDaemonsAreCountedPerVersionWithRejectionsAndSilence() throws {
        for d in ["d1", "d2", "d3"] { XCTAssertEqual(sync(d).status, 0) }
        XCTAssertEqual(try FileSystem.listDirectory(remote + "/reports").sorted(), ["d1.json", "d2.json", "d3.json"])
        var view = try fleet()
        XCTAssertEqual(view["devices"]?.int64Value, 0, "no device is enrolled yet")
        XCTAssertEqual(view["refused"]?.arrayValue?.filter { $0["reason"]?.stringValue == "unenrolled" }.count, 3)
        enroll(["d1", "d2", "d3"])
        view = try fleet()
        XCTAssertEqual(view["devices"]?.int64Value, 3)
        XCTAssertEqual(view["models"]?["intent"]?["1.0.0"]?["running"]?.int64Value, 3)
        promote("1.1.0")
        // d1's health check fails (it goes back and rejects 1.1.0), d2 takes it, d3 stays silent.
        sync("d1", ["--health-check", "false"])
        XCTAssertEqual(sync("d2").status, 0)
        view = try fleet()
        XCTAssertEqual(view["models"]?["intent"]?["1.1.0"]?["running"]?.int64Value, 1)
        XCTAssertEqual(view["models"]?["intent"]?["1.1.0"]?["rejected"]?.int64Value, 1)
        XCTAssertEqual(view["models"]?["intent"]?["1.1.0"]?["failure_rate"]?.doubleValue, 0.5)
        XCTAssertEqual(view["models"]?["intent"]?["1.0.0"]?["running"]?.int64Value, 2)
        XCTAssertGreaterThan(view["models"]?["intent"]?["1.1.0"]?["bytes_fetched"]?.int64Value ?? 0, 0)
        let report = try DeviceReport.decode(TestSupport.read(remote + "/reports/d1.json"), source: "d1")
        XCTAssertEqual(report.models["intent"]?.state, .rejected)
        XCTAssertEqual(report.models["intent"]?.installed, "1.0.0")
        XCTAssertEqual(report.models["intent"]?.target, "1.1.0")
        // Silence: every report is older than a millisecond by now.
        Thread.sleep(forTimeInterval: 1.1)
        XCTAssertEqual(try fleet(["--silent-after", "1ms"])["silent_devices"]?.arrayValue?.count, 3)
        let human = TestSupport.cli(["fleet", remote], store: publisher)
        XCTAssertTrue(human.stdout.contains("3 of 3 enrolled devices") && human.stdout.contains("1.1.0"), human.stdout)
    }

    /// A report someone else wrote into reports/ is listed as damaged, never counted, and a
    /// failed round is reported as failed with its class, not its message.
    func testADamagedReportIsListedNotCountedAndAFailedRoundReportsItsClass() throws {
        XCTAssertEqual(sync("d1").status, 0)
        enroll(["d1"])
        TestSupport.write(Array("{\"type\":\"slmstore-device-report\",\"format\":1,\"device\":\"x\",\"models\":[".utf8), to: remote + "/reports/evil.json")
        TestSupport.write(Array(repeating: 0x20, count: 1 << 20), to: remote + "/reports/huge.json")
        let view = try fleet()
        XCTAssertEqual(view["devices"]?.int64Value, 1)
        XCTAssertEqual(view["damaged"]?.arrayValue?.count, 2)
        try FileManager.default.removeItem(atPath: remote + "/manifest.json")
        XCTAssertEqual(sync("d1").status, 1)
        let report = try DeviceReport.decode(TestSupport.read(remote + "/reports/d1.json"), source: "d1")
        XCTAssertEqual(report.models["intent"]?.state, .failed)
        XCTAssertEqual(report.models["intent"]?.errorClass, "remote")
        XCTAssertFalse(String(decoding: TestSupport.read(remote + "/reports/d1.json"), as: UTF8.self).contains(remote))
    }

    /// An http(s) remote is read-only: the report goes by PUT to --report-url (nginx WebDAV), with
    /// the device's token, and carries no credential; a sink that refuses does not fail the round.
    func testAReportIsPutToAReportURLWithoutCredentialsAndAFailingSinkNeverBlocksTheUpdate() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let sinkRoot = dir + "/sink"
        try FileSystem.makeDirectories(sinkRoot)
        let sink = try NginxServer(serving: sinkRoot, acceptPut: true)
        defer { sink.stop() }
        let token = "tok-\(FileSystem.randomHex(8))"
        let r = sync("d1", from: nginx.url, ["--report-url", sink.url + "/fleet/reports"], env: ["SLMSTORE_TOKEN": token])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let bytes = TestSupport.read(sinkRoot + "/fleet/reports/d1.json")
        XCTAssertEqual(try DeviceReport.decode(bytes, source: "sink").models["intent"]?.installed, "1.0.0")
        XCTAssertFalse(String(decoding: bytes, as: UTF8.self).contains(token))
        XCTAssertLessThanOrEqual(bytes.count, DeviceReport.maxEncodedSize)
        // A sink that cannot store it (nginx without PUT answers 405): logged, the update goes on.
        promote("1.1.0")
        let refused = sync("d1", from: nginx.url, ["--report-url", nginx.url + "/reports"])
        XCTAssertEqual(refused.status, 0, refused.stdout)
        XCTAssertTrue(refused.stdout.contains("could not send the device report"), refused.stdout)
        XCTAssertEqual(InstallDirectory(root: dir + "/d1/intent").current(), "1.1.0")
    }

    /// The JSON log lines of a `sync --once --log-format json` run.
    func events(_ r: TestSupport.Run) -> [JSONValue] {
        r.stdout.split(separator: "\n").compactMap { try? JSONValue.parse(Array($0.utf8)) }
    }

    /// Download separated from activation (hawkBit's and Mender's download-only): the round
    /// brings the version into the device store and the report says pending; the next round
    /// installs it without fetching a chunk.
    func testADownloadOnlyRoundFetchesWithoutInstallingAndTheNextInstallsWithNothingToFetch() throws {
        XCTAssertEqual(sync("edge-1").status, 0)
        enroll(["edge-1"])
        promote("1.1.0")
        let fetch = sync("edge-1", ["--download-only", "--log-format", "json"])
        XCTAssertEqual(fetch.status, 0, fetch.stderr)
        let downloaded = try XCTUnwrap(events(fetch).first { $0["event"]?.stringValue == "downloaded" }, fetch.stdout)
        XCTAssertGreaterThan(downloaded["bytes_downloaded"]?.uint64Value ?? 0, 0)
        XCTAssertFalse(events(fetch).contains { $0["event"]?.stringValue == "update" })
        XCTAssertEqual(InstallDirectory(root: "\(dir)/edge-1/intent").current(), "1.0.0")
        XCTAssertEqual(try fleet()["models"]?["intent"]?["1.1.0"]?["pending"]?.uint64Value, 1, "the report says it is on its way")
        let install = sync("edge-1", ["--log-format", "json"])
        XCTAssertEqual(install.status, 0, install.stderr)
        let update = try XCTUnwrap(events(install).first { $0["event"]?.stringValue == "update" }, install.stdout)
        XCTAssertEqual(update["chunks_fetched"]?.uint64Value, 0, "\(update)")
        XCTAssertEqual(InstallDirectory(root: "\(dir)/edge-1/intent").current(), "1.1.0")
    }

    /// `--window`: outside it a round fetches and sends nothing; inside it the update happens.
    /// (UTC for the test, so the windows around the current minute are the device's own.)
    func testARoundOutsideTheDownloadWindowDoesNothingAndOneInsideUpdates() throws {
        var t = time(nil)
        var now = tm()
        gmtime_r(&t, &now)
        let minute = Int(now.tm_hour) * 60 + Int(now.tm_min)
        func at(_ m: Int) -> String { let m = (m + 1440) % 1440; return String(format: "%02d:%02d", m / 60, m % 60) }
        let outside = "\(at(minute + 120))-\(at(minute + 180))", inside = "\(at(minute - 60))-\(at(minute + 60))"
        let closed = sync("edge-2", ["--window", outside, "--log-format", "json"], env: ["TZ": "UTC"])
        XCTAssertEqual(closed.status, 0, closed.stderr)
        XCTAssertTrue(closed.stdout.contains("outside the download window \(outside)"), closed.stdout)
        XCTAssertNil(InstallDirectory(root: "\(dir)/edge-2/intent").current())
        XCTAssertFalse(FileSystem.exists(remote + "/reports/edge-2.json"), "nothing is sent outside the window")
        let open = sync("edge-2", ["--window", inside], env: ["TZ": "UTC"])
        XCTAssertEqual(open.status, 0, open.stderr)
        XCTAssertEqual(InstallDirectory(root: "\(dir)/edge-2/intent").current(), "1.0.0")
        for bad in ["25:00-01:00", "01:00-01:00", "1:00-02:00", "01:00"] {
            let r = sync("edge-3", ["--window", bad])
            XCTAssertEqual(r.status, 2, bad)
            XCTAssertTrue(r.stderr.contains("--window"), r.stderr)
        }
    }

    /// A round that starts a download says so first: the fleet sees the device on its way
    /// (state downloading, counted as pending) before the round's own report.
    func testARoundReportsDownloadingBeforeItFetchesAVersion() throws {
        let path = remote + "/reports/edge-slow.json"
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var run: TestSupport.Run? = nil
        let (remote, dir) = (self.remote, self.dir)
        Thread {
            // About 70 KB at 20 KB/s: a few seconds in flight.
            run = TestSupport.cli(["sync", remote, "--to", "\(dir)/edge-slow", "--follow", "intent@production", "--once", "--device-id", "edge-slow",
                                   "--store", "\(dir)/edge-slow-store", "--max-rate", "20K"])
            done.signal()
        }.start()
        var seen: String? = nil
        let deadline = Date().addingTimeInterval(30)
        while seen == nil && Date() < deadline {
            if let bytes = try? FileSystem.readFile(path, limit: 4096), let r = try? DeviceReport.decode(bytes, source: path),
               r.models["intent"]?.state == .downloading {
                seen = r.models["intent"]?.target
            }
            usleep(20_000)
        }
        done.wait()
        XCTAssertEqual(run?.status, 0, run?.stderr ?? "")
        XCTAssertEqual(seen, "1.0.0", "a downloading report named the target while the round fetched it")
        XCTAssertEqual(try DeviceReport.decode(TestSupport.read(path), source: path).models["intent"]?.state, .installed)
    }

    /// `pull --to --report`: a device without the daemon reports what it ended on, and a failed
    /// pull reports its error class.
    func testAPullWithReportLeavesTheDevicesReport() throws {
        let ok = TestSupport.cli(["pull", remote, "intent@production", "--to", dir + "/puller", "--report", "--device-id", "puller"],
                                 store: dir + "/puller-store")
        XCTAssertEqual(ok.status, 0, ok.stderr)
        enroll(["puller"])
        var view = try fleet()
        XCTAssertEqual(view["models"]?["intent"]?["1.0.0"]?["running"]?.uint64Value, 1)
        let bad = TestSupport.cli(["pull", remote, "intent@9.9.9", "--to", dir + "/puller", "--report", "--device-id", "puller"],
                                  store: dir + "/puller-store")
        XCTAssertNotEqual(bad.status, 0)
        view = try fleet()
        XCTAssertEqual(view["models"]?["intent"]?["9.9.9"]?["failed"]?.uint64Value, 1, "\(view)")
        XCTAssertEqual(view["models"]?["intent"]?["1.0.0"]?["running"]?.uint64Value, 1, "still on what it had")
        let lone = TestSupport.cli(["pull", remote, "intent@production", "--report"], store: dir + "/puller-store")
        XCTAssertEqual(lone.status, 2)
        XCTAssertTrue(lone.stderr.contains("--report with --to DIR"), lone.stderr)
    }

    /// `fleet --target`: what the fleet will download for a version, per version devices run:
    /// the devices times what `diff` says one of them fetches (deltas, as the remote has them).
    func testFleetTargetShowsWhatTheDevicesWillDownloadForAVersion() throws {
        for d in ["edge-a", "edge-b"] { XCTAssertEqual(sync(d).status, 0) }
        enroll(["edge-a", "edge-b"])
        let r = TestSupport.cli(["fleet", remote, "--target", "intent@1.1.0", "--json"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        let download = try XCTUnwrap(try TestSupport.json(r)["download"])
        let row = try XCTUnwrap(download["from"]?.arrayValue?.first)
        XCTAssertEqual(row["version"]?.stringValue, "1.0.0")
        XCTAssertEqual(row["devices"]?.uint64Value, 2)
        // Unrelated weights: delta records are no smaller, so push wrote no delta set.
        XCTAssertEqual(row["via_deltas"], .bool(false))
        let diff = try TestSupport.json(TestSupport.cli(["diff", "intent@1.0.0", "intent@1.1.0", "--no-delta", "--json"], store: publisher))
        XCTAssertEqual(row["bytes_each"]?.uint64Value, diff["bytes_to_fetch"]?.uint64Value)
        XCTAssertEqual(download["total_bytes"]?.uint64Value, 2 * (diff["bytes_to_fetch"]?.uint64Value ?? 0))
        let human = TestSupport.cli(["fleet", remote, "--target", "intent@1.1.0"], store: publisher)
        XCTAssertTrue(human.stdout.contains("to reach intent@1.1.0"), human.stdout)
    }

    /// `fleet --web`: the fleet page beside the registry pages, read by a real browser; device
    /// ids come from reports anyone with write access to reports/ can plant, so they show as text.
    func testTheFleetPageShowsTheCountsAndNoReportedNameRunsAsMarkup() throws {
        guard TestSupport.chromium != nil else { throw XCTSkip("chromium not installed (apt-get install chromium)") }
        XCTAssertEqual(sync("edge-a").status, 0)
        enroll(["edge-a"])
        let hostile = "<img src=x onerror=\"document.title='pwned'\">\u{1b}[31m"
        let planted = DeviceReport(device: hostile, time: Timestamp.now(), models: ["intent": .init(installed: "1.0.0", target: "1.0.0", state: .installed)])
        TestSupport.write(try XCTUnwrap(planted.encoded()), to: remote + "/reports/planted.json")
        let r = TestSupport.cli(["fleet", remote, "--web", "--silent-after", "1s"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        sleep(2)  // so both devices are silent and listed by id
        XCTAssertEqual(TestSupport.cli(["fleet", remote, "--web", "--silent-after", "1s"], store: publisher).status, 0)
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let page = try TestSupport.browser(["--dump-dom", nginx.url + "/web/fleet.html"], profile: dir + "/chromium")
        XCTAssertTrue(page.contains("<title>slmstore fleet</title>"), "an injected script would have changed the title: \(page.prefix(300))")
        XCTAssertTrue(page.contains("1 of 1 enrolled devices reporting"), page)
        XCTAssertTrue(page.contains("<td>1.0.0</td><td>1</td>"), "the one enrolled device runs 1.0.0; the planted report is not counted")
        XCTAssertTrue(page.contains("&lt;img src=x onerror="), "the hostile id shows as text")
        XCTAssertFalse(page.contains("<img"), "no element was injected")
        XCTAssertFalse(String(decoding: TestSupport.read(remote + "/web/fleet.html"), as: UTF8.self).contains("\u{1b}"), "no raw ESC reaches the page")
        XCTAssertTrue(page.contains("U+001B"), "the ESC shows as its code point")
        let readOnly = try NginxServer(serving: remote)
        defer { readOnly.stop() }
        let refused = TestSupport.cli(["fleet", readOnly.url, "--web"], store: publisher)
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("read-only"), refused.stderr)
    }

    /// Devices in a rollout's slice (a hash of their id), picked so the test does not depend on luck.
    func devicesInSlice(_ count: Int, version: String, percent: Double) -> [String] {
        (0..<1000).map { "dev-\($0)" }.filter { RolloutSlice.includes(device: $0, model: "intent", version: version, percent: percent) }
            .prefix(count).map { $0 }
    }

    /// Auto-halt: a rollout started with --halt-on-failure is halted by `fleet --apply` once
    /// enough devices that took it rejected it; a devices' next round takes them back, and the
    /// halt and its reason are in history. A rollout nobody rejects is left alone.
    func testFleetApplyHaltsARolloutWhoseDevicesRejectItAndLeavesAGoodOneRunning() throws {
        let takers = devicesInSlice(4, version: "1.1.0", percent: 50)
        for d in takers { XCTAssertEqual(sync(d).status, 0) }  // all on 1.0.0 first
        enroll(takers)
        let r = TestSupport.cli(["rollout", "intent@1.1.0", "production", "--percent", "50", "--halt-on-failure", "20%", "--min-devices", "3",
                                 "--skip-staging", "--allow-breaking"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--no-web"], store: publisher).status, 0)
        // Two devices pass their check: under the minimum count, and no failures: nothing to do.
        for d in takers.prefix(2) { XCTAssertEqual(sync(d, ["--health-check", "true"]).status, 0) }
        var applied = TestSupport.cli(["fleet", remote, "--apply", "--json"], store: publisher)
        XCTAssertEqual(applied.status, 0, applied.stderr)
        XCTAssertEqual(try TestSupport.json(applied)["halted"]?.arrayValue?.count, 0)
        // Two more reject it: 2 of 4 (50%) passes 20% with 4 >= 3 devices.
        for d in takers.suffix(2) { sync(d, ["--health-check", "false"]) }
        applied = TestSupport.cli(["fleet", remote, "--apply", "--json"], store: publisher)
        XCTAssertEqual(applied.status, 0, applied.stderr)
        let halted = try TestSupport.json(applied)["halted"]?.arrayValue ?? []
        XCTAssertEqual(halted.first?["rollout"]?.stringValue, "intent@production")
        XCTAssertTrue(halted.first?["reason"]?.stringValue?.contains("2 of 4 devices") ?? false, "\(halted)")
        XCTAssertEqual(try Store.open(at: publisher).rollout(of: try ModelName("intent"), stage: "production")?.state, .halted)
        // Published: the remote lists no active rollout, and a device that took 1.1.0 goes back.
        let manifest = try Manifest.decode(TestSupport.read(remote + "/manifest.json"), source: "m")
        XCTAssertNil(manifest.models["intent"]?.rollouts["production"])
        XCTAssertEqual(sync(takers[0]).status, 0)
        XCTAssertEqual(InstallDirectory(root: "\(dir)/\(takers[0])/intent").current(), "1.0.0")
        let history = try TestSupport.json(TestSupport.cli(["history", "intent", "--json"], store: publisher))["history"]?.arrayValue ?? []
        XCTAssertEqual(history.last?["action"]?.stringValue, "halt")
        XCTAssertTrue(history.last?["reason"]?.stringValue?.hasPrefix("fleet: 2 of 4 devices") ?? false, "\(history)")
    }

    func testFleetApplyNeedsASigningKeyForASignedRemote() throws {
        XCTAssertEqual(TestSupport.cli(["keygen", dir + "/key"]).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--sign", dir + "/key"], store: publisher).status, 0)
        let r = TestSupport.cli(["fleet", remote, "--apply"], store: publisher)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--sign"), r.stderr)
    }

    /// Fleet-aware deltas: a device still on 1.0.0 while 1.1.0 and 1.2.0 went out gets a delta
    /// set from 1.0.0 to the next release only when the publisher pushes with --deltas-for-fleet.
    func testPushWritesDeltasForTheVersionsDevicesReportRunning() throws {
        let base = TestSupport.bf16Like(400_000, seed: 1)
        func tuned(_ seed: Int) -> [UInt8] {
            var t = base
            for i in stride(from: seed * 2, to: t.count, by: 32) { t[i] ^= 1 }
            return t
        }
        let publisher = dir + "/pub-fleet", remote = dir + "/remote-fleet"
        func add(_ v: String, _ bytes: [UInt8]) {
            TestSupport.write(TestSupport.safetensors([("w", "BF16", [200_000], bytes)]), to: "\(dir)/fl-\(v)/model.safetensors")
            XCTAssertEqual(TestSupport.cli(["add", "m@\(v)", "\(dir)/fl-\(v)"], store: publisher).status, 0)
        }
        add("1.0.0", base)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--no-web"], store: publisher).status, 0)
        let device = TestSupport.cli(["sync", remote, "--to", dir + "/old-device", "--follow", "m@^1", "--once", "--device-id", "old",
                                      "--store", dir + "/old-store"])
        XCTAssertEqual(device.status, 0, device.stdout)
        XCTAssertEqual(TestSupport.cli(["device", "enroll", remote, "old"], store: publisher).status, 0)
        add("1.1.0", tuned(1))
        add("1.2.0", tuned(2))
        XCTAssertEqual(TestSupport.cli(["push", remote, "--no-web"], store: publisher).status, 0)
        let store = try Store.open(at: publisher)
        let (v10, v13) = (try store.resolve("m@1.0.0").id, { () throws -> SHA256Digest in
            add("1.3.0", tuned(3))
            return try store.resolve("m@1.3.0").id
        })
        let id13 = try v13()
        // The same remote, reports and all, pushed to without the option: parent and stage holders only.
        let control = dir + "/remote-control"
        let copy = Process()
        copy.executableURL = URL(fileURLWithPath: "/bin/cp")
        copy.arguments = ["-a", remote, control]
        try copy.run()
        copy.waitUntilExit()
        XCTAssertEqual(TestSupport.cli(["push", control, "--no-web", "m@1.3.0"], store: publisher).status, 0)
        XCTAssertTrue(FileSystem.exists("\(control)/reports/old.json"))
        XCTAssertEqual(TestSupport.cli(["device", "enroll", control, "old"], store: publisher).status, 0)
        XCTAssertFalse(FileSystem.exists("\(control)/deltas/\(id13.hex).\(v10.hex)"))
        let r = TestSupport.cli(["push", remote, "--no-web", "--deltas-for-fleet", "m@1.3.0", "--json"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileSystem.exists("\(remote)/deltas/\(id13.hex).\(v10.hex)"))
        // What the fleet will download for 1.3.0 from 1.0.0: deltas on this remote, full records on the control.
        func download(_ r: String) throws -> JSONValue? {
            let out = TestSupport.cli(["fleet", r, "--target", "m@1.3.0", "--json"], store: publisher)
            XCTAssertEqual(out.status, 0, out.stderr)
            return try TestSupport.json(out)["download"]?["from"]?.arrayValue?.first { $0["version"]?.stringValue == "1.0.0" }
        }
        let (withDeltas, without) = (try download(remote), try download(control))
        XCTAssertEqual(withDeltas?["via_deltas"], .bool(true))
        XCTAssertEqual(without?["via_deltas"], .bool(false))
        XCTAssertLessThan(withDeltas?["bytes_each"]?.uint64Value ?? .max, without?["bytes_each"]?.uint64Value ?? 0)
        // The device three releases behind now downloads deltas, not the version's full records.
        let update = TestSupport.cli(["pull", remote, "m@1.3.0", "--json"], store: dir + "/old-store")
        XCTAssertEqual(update.status, 0, update.stderr)
        XCTAssertGreaterThan(try TestSupport.json(update)["chunks_from_deltas"]?.int64Value ?? 0, 0)
    }
}
