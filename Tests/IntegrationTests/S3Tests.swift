import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Native S3 remotes against moto's S3 server with authentication on: a private bucket that
/// only a signed request with the right key can read or write.
final class S3Tests: XCTestCase {
    var dir = ""
    var moto: MotoS3Server!
    var publisher = ""
    let remote = "s3://models/store"

    override func setUpWithError() throws {
        guard MotoS3Server.isAvailable else { throw XCTSkip("moto_server and aws CLI not installed (pip install 'moto[server]' awscli)") }
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        moto = try MotoS3Server(buckets: ["models"])
    }

    override func tearDown() { moto?.stop() }

    func cli(_ args: [String], store: String? = nil, env extra: [String: String] = [:]) -> TestSupport.Run {
        var env = moto.clientEnvironment
        for (k, v) in extra { env[k] = v }
        return TestSupport.cli(args, store: store ?? publisher, environment: env)
    }

    /// A version whose one file holds `size` random bytes (incompressible, so packs are that big).
    @discardableResult
    func add(_ ref: String, size: Int, seed: UInt64, store: String? = nil) -> [UInt8] {
        let bytes = TestSupport.random(size, seed: seed)
        let src = "\(dir)/src-\(ref)-\(seed)"
        TestSupport.write(bytes, to: src + "/weights.bin")
        let r = TestSupport.cli(["add", ref, src], store: store ?? publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return bytes
    }

    func manifestVersions() throws -> Set<String> {
        let text = try moto.aws(["s3", "cp", remote + "/manifest.json", "-"])
        var m = try Manifest.decode(Array(text.utf8), source: "manifest")
        try m.loadVersions(of: ["m"], location: remote) { path, _ in Array(try moto.aws(["s3", "cp", remote + "/" + path, "-"]).utf8) }
        return Set(m.models["m"]?.versions.map(\.version) ?? [])
    }

    func testPushPullAndSyncRoundTripThroughAPrivateBucket() throws {
        let v1 = add("m@1.0.0", size: 3 << 20, seed: 1)
        let push = cli(["push", remote, "--json"])
        XCTAssertEqual(push.status, 0, push.stderr)
        XCTAssertEqual(try TestSupport.json(push)["pushed"]?.arrayValue?.count, 1)

        // The bucket is private: the same objects over plain HTTP without a signature are refused.
        let anonymous = TestSupport.cli(["pull", "\(moto.endpoint)/models/store", "m@1.0.0"], store: dir + "/anon")
        XCTAssertEqual(anonymous.status, 6, anonymous.stderr)

        let pull = cli(["pull", remote, "m@1.0.0", "--to", dir + "/device", "--json"], store: dir + "/edge")
        XCTAssertEqual(pull.status, 0, pull.stderr)
        XCTAssertSameBytes(TestSupport.read(dir + "/device/current/weights.bin"), v1)

        // An update ships only what the device lacks.
        add("m@1.1.0", size: 1 << 20, seed: 2)
        XCTAssertEqual(cli(["promote", "m@1.1.0", "production", "--skip-staging"]).status, 0)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        let sync = cli(["sync", remote, "--to", dir + "/fleet", "--follow", "m@production", "--once"], store: dir + "/edge")
        XCTAssertEqual(sync.status, 0, sync.stdout + sync.stderr)
        XCTAssertEqual(InstallDirectory(root: dir + "/fleet/m").current(), "1.1.0")
        let update = cli(["pull", remote, "m@1.1.0", "--json"], store: dir + "/edge2-\(0)")
        XCTAssertEqual(update.status, 0, update.stderr)
        XCTAssertEqual(cli(["verify"], store: dir + "/edge").status, 0)
    }

    /// Signed releases on a bucket: push --sign and resign replace release.json with If-Match,
    /// a trusting device installs from it, and a replayed older release.json is refused.
    func testASignedReleaseOnABucketIsCheckedByTheDevice() throws {
        XCTAssertEqual(TestSupport.cli(["keygen", dir + "/key"]).status, 0)
        add("m@1.0.0", size: 1 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--sign", dir + "/key"]).status, 0)
        let old = try moto.aws(["s3", "cp", remote + "/release.json", "-"])
        let r = cli(["pull", remote, "m@1.0.0", "--trust", dir + "/key.pub"], store: dir + "/edge")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(cli(["resign", remote, "--sign", dir + "/key", "--expires", "1d"]).status, 0)
        XCTAssertEqual(cli(["pull", remote, "m@1.0.0"], store: dir + "/edge").status, 0)
        TestSupport.write(Array(old.utf8), to: dir + "/old-release.json")
        _ = try moto.aws(["s3", "cp", dir + "/old-release.json", remote + "/release.json"])
        let replay = cli(["pull", remote, "m@1.0.0"], store: dir + "/edge")
        XCTAssertEqual(replay.status, 8, replay.stderr)
        XCTAssertTrue(replay.stderr.contains("replayed"), replay.stderr)
    }

    func testWrongCredentialsFailAtOnceWithExit6AndNoSecretInOutput() throws {
        add("m@1.0.0", size: 100_000, seed: 1)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        let wrong = "not-the-secret-0123456789"
        let start = Date()
        let r = cli(["pull", remote, "m@1.0.0"], store: dir + "/edge", env: ["AWS_SECRET_ACCESS_KEY": wrong])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "a refused signature is not retried")
        XCTAssertTrue(r.stderr.contains("SignatureDoesNotMatch"), r.stderr)
        XCTAssertTrue(r.stderr.contains("AWS_ACCESS_KEY_ID"), "names where the credentials came from: \(r.stderr)")
        XCTAssertFalse(r.stderr.contains(wrong) || r.stdout.contains(wrong))
        XCTAssertFalse(r.stderr.contains(moto.secretAccessKey))
        let push = cli(["push", remote], env: ["AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY"])
        XCTAssertEqual(push.status, 6, push.stderr)
    }

    func testCredentialsComeFromAProfileInTheSharedFiles() throws {
        add("m@1.0.0", size: 100_000, seed: 1)
        let creds = dir + "/aws-credentials", config = dir + "/aws-config"
        TestSupport.write(Array("[ci]\naws_access_key_id = \(moto.accessKeyID)\naws_secret_access_key = \(moto.secretAccessKey)\n".utf8), to: creds)
        TestSupport.write(Array("[profile ci]\nregion = us-east-1\nendpoint_url = \(moto.endpoint)\n".utf8), to: config)
        let env = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": "", "AWS_PROFILE": "ci",
                   "AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": config]
        let r = cli(["push", remote], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try manifestVersions(), ["1.0.0"])
    }

    func testAKilledMultipartPushResumesWithoutResendingFinishedParts() throws {
        add("m@1.0.0", size: 24 << 20, seed: 5)
        let part = ["SLMSTORE_S3_PART_SIZE": String(5 << 20)]
        let killed = cli(["push", remote], env: part.merging(["SLMSTORE_CRASH_AT": "push-after-part"]) { $1 })
        XCTAssertEqual(killed.status, 9, "killed by SIGKILL after the first part")
        XCTAssertFalse(try moto.aws(["s3", "ls", "--recursive", "s3://models/"]).contains("refs/"), "nothing is listed before its data is there")
        let resumed = cli(["push", remote, "--json"], env: part)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let sent = try TestSupport.json(resumed)["bytes_sent"]!.uint64Value!
        XCTAssertLessThan(sent, UInt64(24 << 20) - UInt64(5 << 20) + (1 << 20), "the finished 5 MiB part is not sent again")
        let pull = cli(["pull", remote, "m@1.0.0", "--to", dir + "/device"], store: dir + "/edge")
        XCTAssertEqual(pull.status, 0, pull.stderr)
        XCTAssertSameBytes(TestSupport.read(dir + "/device/current/weights.bin"), TestSupport.random(24 << 20, seed: 5))
    }

    func testConcurrentPushesToOneBucketAreAllListed() throws {
        let other = dir + "/publisher-b"
        var expected = Set<String>()
        for round in 0..<20 {
            add("m@1.\(round).0", size: 20_000, seed: UInt64(100 + round))
            add("m@2.\(round).0", size: 20_000, seed: UInt64(200 + round), store: other)
            expected.formUnion(["1.\(round).0", "2.\(round).0"])
            var env = ProcessInfo.processInfo.environment
            for (k, v) in moto.clientEnvironment { env[k] = v }
            let a = try spawn(["push", remote, "m@1.\(round).0"], store: publisher, env: env, errorLog: dir + "/a.err")
            let b = try spawn(["push", remote, "m@2.\(round).0"], store: other, env: env, errorLog: dir + "/b.err")
            a.waitUntilExit()
            b.waitUntilExit()
            XCTAssertEqual(a.terminationStatus, 0, "round \(round): \(String(decoding: TestSupport.read(dir + "/a.err"), as: UTF8.self))")
            XCTAssertEqual(b.terminationStatus, 0, "round \(round): \(String(decoding: TestSupport.read(dir + "/b.err"), as: UTF8.self))")
            XCTAssertEqual(try manifestVersions(), expected, "round \(round): a publisher's version went missing")
        }
    }

    /// A CLI process in the background; its stderr goes to `errorLog` for the failure message.
    func spawn(_ args: [String], store: String, env: [String: String], errorLog: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.binary)
        p.arguments = ["--store", store] + args
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorLog))
        try p.run()
        return p
    }

    /// Publishes a 3 MiB version, then pulls it through a proxy in front of the endpoint that
    /// spoils answers (signed requests pass through): each spoiling mode must end in an error
    /// naming `message` (when not empty) with nothing installed and the edge store sound, and
    /// `retried` (two server errors) must be ridden out.
    func assertSpoiledAnswersAreRefused(_ modes: [(String, String)], retried: String) throws {
        add("m@1.0.0", size: 3 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        for (mode, message) in modes {
            let proxy = try FaultProxy(upstream: moto.port, mode: mode)
            let edge = dir + "/edge-\(mode)"
            let r = cli(["pull", remote, "m@1.0.0", "--to", dir + "/device-\(mode)", "--endpoint", proxy.url], store: edge)
            XCTAssertNotEqual(r.status, 0, mode)
            XCTAssertTrue(message.isEmpty || r.stderr.contains(message), "\(mode): \(r.stderr)")
            XCTAssertNil(InstallDirectory(root: dir + "/device-\(mode)").current(), "\(mode): nothing is installed")
            XCTAssertEqual(cli(["verify"], store: edge).status, 0, "\(mode): the edge store stays sound")
        }
        let proxy = try FaultProxy(upstream: moto.port, mode: retried, count: 2)
        let r = cli(["pull", remote, "m@1.0.0", "--to", dir + "/device-ok", "--endpoint", proxy.url], store: dir + "/edge-ok")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertSameBytes(TestSupport.read(dir + "/device-ok/current/weights.bin"), TestSupport.random(3 << 20, seed: 1))
    }

    /// #29: a device syncing from a bucket writes its report into reports/ with its own
    /// credentials, and `fleet` on the bucket counts it.
    func testADeviceReportsIntoTheBucketAndFleetCountsIt() throws {
        add("m@1.0.0", size: 1 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        let r = cli(["sync", remote, "--to", dir + "/dev", "--follow", "m@^1", "--once", "--device-id", "edge-7", "--store", dir + "/dev-store"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try DeviceReport.decode(Array(try moto.aws(["s3", "cp", remote + "/reports/edge-7.json", "-"]).utf8), source: "s3")
        XCTAssertEqual(report.models["m"]?.installed, "1.0.0")
        XCTAssertEqual(cli(["device", "enroll", remote, "edge-7"]).status, 0)
        let fleet = cli(["fleet", remote, "--json"])
        XCTAssertEqual(fleet.status, 0, fleet.stderr)
        XCTAssertEqual(try TestSupport.json(fleet)["models"]?["m"]?["1.0.0"]?["running"]?.int64Value, 1)
    }

    /// The policy README.md gives a device's own credential: read the store, write only its own
    /// report. The device syncs and reports; every other write with its key is refused by the
    /// server (moto's IAM enforcement), so the remote is exactly as the publisher left it.
    func testADeviceCredentialMayWriteOnlyItsOwnReport() throws {
        add("m@1.0.0", size: 1 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        let policy = #"""
        {"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::models/store/*"},
          {"Effect":"Allow","Action":["s3:PutObject"],"Resource":"arn:aws:s3:::models/store/reports/edge-7.json"}]}
        """#
        let device = try moto.credentials(user: "edge-7", policy: policy)
        let r = TestSupport.cli(["sync", remote, "--to", dir + "/dev", "--follow", "m@^1", "--once", "--device-id", "edge-7",
                                 "--store", dir + "/dev-store"], environment: device)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertFalse(r.stdout.contains("could not send the device report"), r.stdout)
        let manifest = try moto.aws(["s3", "cp", remote + "/manifest.json", "-"])
        // The same write the device is refused below goes through to its own report's key.
        let own = try moto.aws(["s3", "cp", remote + "/reports/edge-7.json", "-"])
        XCTAssertNoThrow(try moto.aws(["s3", "cp", "-", remote + "/reports/edge-7.json"], env: device, input: own))
        for path in ["manifest.json", "reports/victim.json", "refs/m/@stages/production", "registry/m/@rollouts/production", "release.json"] {
            XCTAssertThrowsError(try moto.aws(["s3", "cp", "-", remote + "/" + path], env: device, input: "{}"), path)
        }
        XCTAssertEqual(try moto.aws(["s3", "cp", remote + "/manifest.json", "-"]), manifest)
        // And the push a device might try with that key fails at the first write.
        add("m@9.0.0", size: 1 << 16, seed: 9, store: dir + "/dev-pub")
        XCTAssertNotEqual(TestSupport.cli(["push", remote, "--no-web"], store: dir + "/dev-pub", environment: device).status, 0)
        XCTAssertEqual(try moto.aws(["s3", "cp", remote + "/manifest.json", "-"]), manifest)
    }

    /// Finding 8 of #28: an endpoint that answers writes with a 307 to another host. The
    /// redirect is never followed (the other host sees nothing: no token, no empty body), push
    /// fails, and the bucket's manifest is what the last good push wrote.
    func testARedirectedWriteIsNeverFollowedAndPushFails() throws {
        add("m@1.0.0", size: 1 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        let manifest = try moto.aws(["s3", "cp", remote + "/manifest.json", "-"])
        add("m@1.1.0", size: 1 << 20, seed: 2)
        let log = dir + "/proxy.log"
        let proxy = try FaultProxy(upstream: moto.port, mode: "redirect-writes", log: log)
        let r = cli(["push", remote, "--no-web", "--endpoint", proxy.url])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("HTTP 307"), r.stderr)
        let sunk = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasPrefix("SINK") }
        XCTAssertEqual(sunk, [], "a write followed the redirect")
        XCTAssertEqual(try moto.aws(["s3", "cp", remote + "/manifest.json", "-"]), manifest)
        XCTAssertEqual(try manifestVersions(), ["1.0.0"])
    }

    /// Finding 8: an endpoint that answers 200 to the manifest's PUT and stores nothing does
    /// not make push report success: the manifest is read back.
    func testAManifestWriteThatDidNotLandFailsThePush() throws {
        add("m@1.0.0", size: 1 << 20, seed: 1)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        add("m@1.1.0", size: 1 << 20, seed: 2)
        let proxy = try FaultProxy(upstream: moto.port, mode: "swallow-manifest")
        let r = cli(["push", remote, "--no-web", "--endpoint", proxy.url])
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("answered with success") && r.stderr.contains("manifest.json"), r.stderr)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        XCTAssertEqual(try manifestVersions(), ["1.0.0", "1.1.0"])
    }

    /// Finding 8: listings that never end are refused instead of paged forever.
    func testAListingThatNeverEndsIsRefused() throws {
        for mode in ["repeat-token", "endless-list"] {
            let proxy = try FaultProxy(upstream: moto.port, mode: mode)
            let config = try AWSConfig.resolve(endpoint: proxy.url, environment: moto.clientEnvironment)
            let s3 = S3Backend(bucket: "models", prefix: "store", config: config, maxListPages: 50)
            let start = Date()
            XCTAssertThrowsError(try s3.list("refs", recursive: true), mode) { error in
                XCTAssertTrue("\(error)".contains(mode == "repeat-token" ? "repeats continuation token" : "more than 50 pages"), "\(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        }
    }

    /// #42: a listing that keeps paging stops at its time bound (minutes, not the 8.6 h that
    /// 10,000 slow pages took), whatever its page count.
    func testAnEndlessListingStopsAtItsTimeBound() throws {
        let proxy = try FaultProxy(upstream: moto.port, mode: "endless-list")
        let config = try AWSConfig.resolve(endpoint: proxy.url, environment: moto.clientEnvironment)
        let s3 = S3Backend(bucket: "models", prefix: "store", config: config, listDeadline: 2)
        let start = Date()
        XCTAssertThrowsError(try s3.list("reports", recursive: false, limit: 1_000_000)) { error in
            XCTAssertTrue("\(error)".contains("still not finished after 2 s"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    func testHostileAnswersFromAnS3EndpointNeverInstallBadBytes() throws {
        try assertSpoiledAnswersAreRefused([("corrupt", "served bad data"), ("ignore-range", "ignored the Range header"),
                                            ("oversize", ""), ("truncate", ""), ("drop", "")], retried: "error500")
    }

    /// The streamed whole-file reads (tree objects, pack indexes) behind a spoiling proxy.
    func testSpoiledWholeFileAnswersFromAnS3EndpointAreRefused() throws {
        try assertSpoiledAnswersAreRefused([("tree-corrupt", "does not hash to its id"), ("tree-truncate", ""),
                                            ("index-oversize", "pack index")], retried: "index-error500")
    }

    /// S3 answers get room for an error document beyond a small range; a 2xx body longer than
    /// the range is refused before the extra bytes reach the caller, and no retry hides it.
    func testAnS3AnswerLongerThanASmallRangeIsRefused() throws {
        add("m@1.0.0", size: 20_000, seed: 3)
        XCTAssertEqual(cli(["push", remote, "--no-web"]).status, 0)
        let proxy = try FaultProxy(upstream: moto.port, mode: "oversize")
        var options = Remotes.Options()
        options.environment = moto.clientEnvironment.merging(ProcessInfo.processInfo.environment) { a, _ in a }
        options.endpoint = proxy.url
        options.retry.initialBackoff = 0.01
        let backend = try Remotes.openWritable(remote, options: options, for: "test")
        let pack = try XCTUnwrap(try backend.list("packs", recursive: false).first { $0.hasSuffix(".pack") })
        XCTAssertThrowsError(try backend.readRange(pack, range: 0..<1000)) { error in
            XCTAssertTrue("\(error)".contains("more than the 1000 bytes"), "\(error)")
        }
    }

    func testTheBucketHoldsTheLayoutFormatMdDescribes() throws {
        add("m@1.0.0", size: 100_000, seed: 1)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        let keys = try moto.aws(["s3", "ls", "--recursive", "s3://models/"]).split(separator: "\n").map { String($0.split(separator: " ").last!) }
        XCTAssertTrue(keys.contains("store/config"))
        XCTAssertTrue(keys.contains("store/manifest.json"))
        XCTAssertTrue(keys.contains("store/refs/m/@versions/1.0.0"))
        XCTAssertEqual(keys.filter { $0.hasPrefix("store/packs/") && $0.hasSuffix(".pack") }.count, 1)
        XCTAssertEqual(keys.filter { $0.hasPrefix("store/packs/") && $0.hasSuffix(".idx") }.count, 1)
        XCTAssertEqual(keys.filter { $0.hasPrefix("store/objects/") }.count, 2, "a tree and a version object")
        XCTAssertFalse(keys.contains { $0.contains("/tmp/") || $0.contains("/locks/") }, "\(keys)")
        // Pushing to a prefix that holds something else is refused.
        try moto.aws(["s3", "cp", "-", "s3://models/other/notes.txt"], input: "x")
        let r = cli(["push", "s3://models/other"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("not a slmstore store"), r.stderr)
    }
}
