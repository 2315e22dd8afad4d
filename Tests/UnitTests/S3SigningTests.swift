import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// SigV4 against AWS's published example, and where S3 settings come from.
final class S3SigningTests: XCTestCase {
    func testSignatureMatchesAWSPublishedGetObjectExample() throws {
        // docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object".
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                                             secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                                             sessionToken: nil, source: "test"), region: "us-east-1")
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [],
                                  headers: ["Range": "bytes=0-9"], payloadHash: SigV4Signer.emptyPayloadHash,
                                  date: Date(timeIntervalSince1970: 1_369_353_600))
        XCTAssertEqual(headers["authorization"],
                       "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                       + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                       + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        XCTAssertEqual(headers["x-amz-date"], "20130524T000000Z")
    }

    func testQueryValuesAndKeysAreEncodedAsSigV4Requires() {
        XCTAssertEqual(SigV4Signer.encode("refs/m/@versions/1.0.0+b", keepSlash: true), "refs/m/%40versions/1.0.0%2Bb")
        XCTAssertEqual(SigV4Signer.encode("a/b c~", keepSlash: false), "a%2Fb%20c~")
        XCTAssertEqual(SigV4Signer.encodePathRaw("refs/m/@versions/1.0.0+b"), "refs/m/@versions/1.0.0+b")
    }

    func testEnvironmentCredentialsWinOverTheProfile() throws {
        let dir = TestSupport.scratch()
        TestSupport.write(Array("[default]\naws_access_key_id = FROMFILE\naws_secret_access_key = s\n".utf8), to: dir + "/credentials")
        let c = try AWSConfig.resolve(environment: ["AWS_ACCESS_KEY_ID": "FROMENV", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "t",
                                                    "AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/none"])
        XCTAssertEqual(c.credentials?.accessKeyID, "FROMENV")
        XCTAssertEqual(c.credentials?.sessionToken, "t")
        XCTAssertEqual(c.credentials?.source, "AWS_ACCESS_KEY_ID")
        XCTAssertEqual(c.region, "us-east-1")
    }

    func testANamedProfileGivesCredentialsRegionAndEndpoint() throws {
        let dir = TestSupport.scratch()
        TestSupport.write(Array("# ci\n[ci]\naws_access_key_id = AKIDCI\naws_secret_access_key = secret\n".utf8), to: dir + "/credentials")
        TestSupport.write(Array("[profile ci]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9000/\n".utf8), to: dir + "/config")
        let c = try AWSConfig.resolve(environment: ["AWS_PROFILE": "ci", "AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
                                                    "AWS_CONFIG_FILE": dir + "/config"])
        XCTAssertEqual(c.credentials?.accessKeyID, "AKIDCI")
        XCTAssertEqual(c.region, "eu-west-3")
        XCTAssertEqual(c.endpoint?.absoluteString, "http://127.0.0.1:9000")
        XCTAssertTrue(c.credentials!.source.contains("profile ci"))
        let override = try AWSConfig.resolve(endpoint: "https://minio.example:9443", environment: ["AWS_PROFILE": "ci",
            "AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/config", "AWS_REGION": "us-west-2"])
        XCTAssertEqual(override.endpoint?.absoluteString, "https://minio.example:9443")
        XCTAssertEqual(override.region, "us-west-2")
    }

    func testAKeyWithoutItsSecretOrAMissingProfileIsAClearError() {
        XCTAssertThrowsError(try AWSConfig.resolve(environment: ["AWS_ACCESS_KEY_ID": "A"]))
        XCTAssertThrowsError(try AWSConfig.resolve(environment: ["AWS_PROFILE": "nope", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                                                 "AWS_CONFIG_FILE": "/nonexistent"])) { error in
            XCTAssertTrue("\(error)".contains("nope"), "\(error)")
        }
        XCTAssertThrowsError(try AWSConfig.resolve(endpoint: "ftp://x", environment: [:]))
    }

    func testNoCredentialsMeansAnonymousRequests() throws {
        let c = try AWSConfig.resolve(environment: ["AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"])
        XCTAssertNil(c.credentials)
    }

    func testBucketNamesAndPrefixesAreChecked() throws {
        XCTAssertEqual(try S3Backend.parse("s3://models/store/").bucket, "models")
        XCTAssertEqual(try S3Backend.parse("s3://models/a/b/").prefix, "a/b")
        XCTAssertEqual(try S3Backend.parse("s3://models").prefix, "")
        XCTAssertThrowsError(try S3Backend.parse("s3://Bad_Bucket/x"))
        XCTAssertThrowsError(try S3Backend.parse("s3://models/../x"))
        XCTAssertThrowsError(try S3Backend.parse("s3://ab"))
    }

    func testS3ErrorXMLIsReadWithEntitiesDecoded() {
        let xml = "<Error><Code>AccessDenied</Code><Message>a &amp; b &lt;c&gt;</Message></Error>"
        XCTAssertEqual(XMLText.first("Code", in: xml), "AccessDenied")
        XCTAssertEqual(XMLText.first("Message", in: xml), "a & b <c>")
        XCTAssertEqual(XMLText.all("Key", in: "<Key>a</Key><Key>b&amp;</Key>"), ["a", "b&"])
    }
}
