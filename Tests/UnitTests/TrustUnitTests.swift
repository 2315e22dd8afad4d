import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// Signed release metadata and the device's checks, in process: signatures cover the exact
/// payload bytes, and a device's record decides replay and rotation.
final class TrustUnitTests: XCTestCase {
    func release(serial: UInt64, expires: Int64 = Int64(Date().timeIntervalSince1970) + 3600, version: String = "1.0.0",
                 nextKeys: [Ed25519PublicKey]? = nil, remote: String? = nil) -> SignedRelease {
        SignedRelease(serial: serial, remote: remote, issued: 0, expires: expires,
                      models: ["m": .init(versions: [version: SHA256Hasher.hash(Array(version.utf8))], stages: ["production": version], rollouts: [:])],
                      nextKeys: nextKeys)
    }

    func testASignatureIsValidOnlyForTheExactPayloadAndKey() throws {
        let key = try Ed25519PrivateKey.generate(), other = try Ed25519PrivateKey.generate()
        let bytes = try release(serial: 1).signed(by: [key])
        let r = try SignedRelease.decode(bytes, source: "t")
        XCTAssertEqual(r.signers(among: [key.publicKey]), [key.publicKey])
        XCTAssertEqual(r.signers(among: [other.publicKey]), [])
        // One changed character of the payload (the serial) breaks the signature.
        let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\\\"serial\\\":1", with: "\\\"serial\\\":9")
        XCTAssertNotEqual(text, String(decoding: bytes, as: UTF8.self))
        let tampered = try SignedRelease.decode(Array(text.utf8), source: "t")
        XCTAssertEqual(tampered.serial, 9)
        XCTAssertEqual(tampered.signers(among: [key.publicKey]), [])
    }

    func testKeysRoundTripThroughPEMAsOpenSSLWritesThem() throws {
        let dir = TestSupport.scratch()
        let key = try Ed25519PrivateKey.generate()
        TestSupport.write(Array(key.pem.utf8), to: dir + "/k")
        TestSupport.write(Array(key.publicKey.pem.utf8), to: dir + "/k.pub")
        XCTAssertEqual(try Ed25519PrivateKey.read(file: dir + "/k").publicKey, key.publicKey)
        XCTAssertEqual(try Ed25519PublicKey.read(file: dir + "/k.pub"), key.publicKey)
        XCTAssertThrowsError(try Ed25519PublicKey.read(file: dir + "/k")) { XCTAssertTrue("\($0)".contains("not an Ed25519 public key")) }
    }

    func gate(_ dir: String, trusting keys: [Ed25519PublicKey]) -> ReleaseGate {
        ReleaseGate(trusted: keys, location: "http://example", recordPaths: [dir + "/a.json", dir + "/b/c.json"])
    }

    func testTheSameSerialWithOtherContentIsRefusedAndAnEqualReleaseAccepted() throws {
        let dir = TestSupport.scratch()
        let key = try Ed25519PrivateKey.generate()
        let g = gate(dir, trusting: [key.publicKey])
        let first = try release(serial: 5).signed(by: [key])
        XCTAssertNotNil(try g.accept(first))
        XCTAssertNotNil(try g.accept(first))
        XCTAssertThrowsError(try g.accept(try release(serial: 5, version: "2.0.0").signed(by: [key]))) {
            XCTAssertTrue("\($0)".contains("different content"), "\($0)")
        }
        XCTAssertThrowsError(try g.accept(try release(serial: 4).signed(by: [key]))) { XCTAssertTrue("\($0)".contains("replayed")) }
        XCTAssertNotNil(try g.accept(try release(serial: 6, version: "2.0.0").signed(by: [key])))
    }

    /// The record in the install directory counts even if the store's copy is gone or older.
    func testTheHighestRecordedSerialCountsWhicheverCopyHoldsIt() throws {
        let dir = TestSupport.scratch()
        let key = try Ed25519PrivateKey.generate()
        XCTAssertNotNil(try gate(dir, trusting: [key.publicKey]).accept(try release(serial: 7).signed(by: [key])))
        try FileManager.default.removeItem(atPath: dir + "/a.json")
        XCTAssertEqual(try gate(dir, trusting: []).record()?.serial, 7)
        XCTAssertTrue(try gate(dir, trusting: []).isActive())
        XCTAssertThrowsError(try gate(dir, trusting: []).accept(nil)) { XCTAssertTrue("\($0)".contains("refusing unsigned")) }
    }

    /// Finding 4: a damaged record is an error, never "no record" (which would drop the floor).
    func testADamagedTrustRecordIsAnErrorAndKeepsTheFloor() throws {
        let dir = TestSupport.scratch()
        let key = try Ed25519PrivateKey.generate()
        XCTAssertNotNil(try gate(dir, trusting: [key.publicKey]).accept(try release(serial: 7).signed(by: [key])))
        for damage in [Array("{\"serial\": 7, \"payl".utf8), Array("{}".utf8), Array("not json".utf8)] {
            TestSupport.write(damage, to: dir + "/b/c.json")
            XCTAssertThrowsError(try gate(dir, trusting: [key.publicKey]).accept(try release(serial: 3).signed(by: [key]))) {
                XCTAssertTrue("\($0)".contains("c.json") && "\($0)".contains("corrupt"), "\($0)")
            }
            XCTAssertThrowsError(try gate(dir, trusting: []).isActive())
        }
    }

    /// Finding 3: the first release with a remote id pins it; a release for another remote, or
    /// one naming none, is refused afterwards.
    func testTheFirstAcceptedRemoteIDIsPinnedAndAnotherRemotesReleaseIsRefused() throws {
        let dir = TestSupport.scratch()
        let key = try Ed25519PrivateKey.generate()
        let g = gate(dir, trusting: [key.publicKey])
        XCTAssertNotNil(try g.accept(try release(serial: 1, remote: "remote-b").signed(by: [key])))
        XCTAssertEqual(try g.record()?.remote, "remote-b")
        XCTAssertThrowsError(try g.accept(try release(serial: 2, remote: "remote-a").signed(by: [key]))) {
            XCTAssertTrue("\($0)".contains("is for remote remote-a") && "\($0)".contains("follows remote remote-b"), "\($0)")
        }
        XCTAssertThrowsError(try g.accept(try release(serial: 3).signed(by: [key]))) { XCTAssertTrue("\($0)".contains("names no remote"), "\($0)") }
        XCTAssertNotNil(try g.accept(try release(serial: 4, remote: "remote-b").signed(by: [key])))
        XCTAssertEqual(try g.record()?.serial, 4)
    }

    /// Finding 2: a serial above 2^53 is damaged metadata, on the device and for the publisher.
    func testASerialAboveTwoToThe53IsRefused() throws {
        let key = try Ed25519PrivateKey.generate()
        for serial in [UInt64.max, UInt64.max - 2, SignedRelease.maxSerial + 1] {
            XCTAssertThrowsError(try SignedRelease.decode(try release(serial: serial).signed(by: [key]), source: "r")) {
                XCTAssertTrue("\($0)".contains("2^53"), "\($0)")
            }
        }
        XCTAssertEqual(try SignedRelease.decode(try release(serial: SignedRelease.maxSerial).signed(by: [key]), source: "r").serial, SignedRelease.maxSerial)
    }

    func testRotationMovesTrustToTheNextKeys() throws {
        let dir = TestSupport.scratch()
        let old = try Ed25519PrivateKey.generate(), new = try Ed25519PrivateKey.generate()
        let g = gate(dir, trusting: [old.publicKey])
        XCTAssertNotNil(try g.accept(try release(serial: 1, nextKeys: [new.publicKey]).signed(by: [old])))
        XCTAssertEqual(try g.record()?.keys, [new.publicKey])
        XCTAssertNotNil(try g.accept(try release(serial: 2).signed(by: [new])))
        XCTAssertThrowsError(try g.accept(try release(serial: 3).signed(by: [old])))
    }

    func testRestrictKeepsOnlySignedVersionsWithTheirIDsAndTheSignedStages() throws {
        let id1 = SHA256Hasher.hash(Array("1.0.0".utf8))
        func entry(_ v: String, _ id: SHA256Digest) -> Manifest.VersionEntry {
            Manifest.VersionEntry(version: v, id: id, tree: id, created: "", size: 0, files: [], dependencies: [], packs: [])
        }
        let manifest = Manifest(project: "p", lastUpdated: "", models: [
            "m": .init(versions: [entry("1.0.0", id1), entry("1.1.0", id1), entry("2.0.0", SHA256Hasher.hash([1]))], stages: ["production": "2.0.0"]),
            "evil": .init(versions: [entry("1.0.0", id1)], stages: [:]),
        ], packs: [])
        let view = release(serial: 1).restrict(manifest)
        XCTAssertEqual(view.models.keys.sorted(), ["m"])
        XCTAssertEqual(view.models["m"]?.versions.map(\.version), ["1.0.0"])
        XCTAssertEqual(view.models["m"]?.stages, ["production": "1.0.0"])
    }

    func testNetrcFindsTheHostsMachineEntryOrTheDefaultAndSkipsMacros() {
        let text = "machine a.example login al password ap\nmacdef init\nmachine fake login x password y\n\ndefault login dl password dp\nmachine b.example\n  login bl\n  password bp\n"
        XCTAssertEqual(Netrc.lookup(host: "a.example", in: text).map { "\($0.0):\($0.1)" }, "al:ap")
        XCTAssertEqual(Netrc.lookup(host: "B.example", in: text).map { "\($0.0):\($0.1)" }, "bl:bp")
        XCTAssertEqual(Netrc.lookup(host: "fake", in: text).map { "\($0.0):\($0.1)" }, "dl:dp")
        XCTAssertNil(Netrc.lookup(host: "x", in: "machine y login a password b\n"))
    }

    func testRedactRemovesUserAndPasswordFromALocation() {
        XCTAssertEqual(HTTPCredentials.redact("https://u:p@host:8080/store"), "https://host:8080/store")
        XCTAssertEqual(HTTPCredentials.redact("https://host/a@b"), "https://host/a@b")
        XCTAssertEqual(HTTPCredentials.redact("/srv/store"), "/srv/store")
    }
}
