import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Scale-out: a pushed store published to an S3-compatible bucket (moto on loopback) with the
/// standard `aws s3 sync`, objects before refs and manifest, then pulled over the bucket's HTTP.
final class BucketTests: XCTestCase {
    func run(_ args: [String], env: [String: String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    static func onPath(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
        }
    }

    func testPullFromAnS3BucketPublishedWithAwsSync() throws {
        // .ci/run installs both from PyPI; a developer machine may not have them.
        guard Self.onPath("moto_server"), Self.onPath("aws") else {
            throw XCTSkip("moto_server and aws CLI not installed (pip install 'moto[server]' awscli)")
        }
        let dir = TestSupport.scratch()
        let port = freePort()
        let env = ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"]
        let moto = Process()
        moto.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        moto.arguments = ["moto_server", "-H", "127.0.0.1", "-p", String(port)]
        moto.standardOutput = FileHandle.nullDevice
        moto.standardError = FileHandle.nullDevice
        try moto.run()
        defer { moto.terminate(); moto.waitUntilExit() }
        try waitForPort(port, timeout: 30)

        let m = SyntheticModel.llamaLike(targetBytes: 3 << 20)
        try FileSystem.makeDirectories(dir + "/v1")
        try m.write(to: dir + "/v1/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "intent@1.0.0", dir + "/v1"], store: dir + "/pub").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote"], store: dir + "/pub").status, 0)

        let endpoint = "http://127.0.0.1:\(port)"
        let aws = ["aws", "--endpoint-url", endpoint]
        XCTAssertEqual(try run(aws + ["s3", "mb", "s3://models"], env: env), 0)
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::models/*"}]}"#
        XCTAssertEqual(try run(aws + ["s3api", "put-bucket-policy", "--bucket", "models", "--policy", policy], env: env), 0)
        // Immutable objects first, then refs, then the manifest that makes them visible.
        XCTAssertEqual(try run(aws + ["s3", "sync", dir + "/remote", "s3://models/store", "--exclude", "manifest.json",
                                      "--exclude", "refs/*", "--exclude", "tmp/*", "--exclude", "locks/*"], env: env), 0)
        XCTAssertEqual(try run(aws + ["s3", "sync", dir + "/remote/refs", "s3://models/store/refs"], env: env), 0)
        XCTAssertEqual(try run(aws + ["s3", "cp", dir + "/remote/manifest.json", "s3://models/store/manifest.json"], env: env), 0)

        let r = TestSupport.cli(["pull", "\(endpoint)/models/store", "intent@latest", "--to", dir + "/device", "--json"], store: dir + "/edge")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertSameBytes(TestSupport.read(dir + "/device/current/model.safetensors"), TestSupport.read(dir + "/v1/model.safetensors"))
    }
}
