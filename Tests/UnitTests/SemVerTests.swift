import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

final class SemVerTests: XCTestCase {
    func testPrecedenceFollowsTheSpecExample() throws {
        let ordered = try ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                       "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1"].map { try SemVer($0) }
        for i in 0..<ordered.count - 1 {
            XCTAssertLessThan(ordered[i], ordered[i + 1], "\(ordered[i]) < \(ordered[i + 1])")
            XCTAssertFalse(ordered[i + 1] < ordered[i])
        }
    }

    func testBuildMetadataIsIgnoredForPrecedence() throws {
        XCTAssertTrue(try SemVer("1.0.0+a").samePrecedence(try SemVer("1.0.0+b")))
    }

    func testInvalidVersionsAreRejected() {
        for bad in ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "a.b.c", "1.0.0+", "1..0", ""] {
            XCTAssertThrowsError(try SemVer(bad), bad)
        }
    }

    func testModelNamesAreValidated() {
        XCTAssertNoThrow(try ModelName("acme/intent-classifier"))
        XCTAssertNoThrow(try ModelName("pii_redactor.v2"))
        for bad in ["Intent", "a//b", "/a", "a/", "-a", "a b", "a@b", "", "../x"] {
            XCTAssertThrowsError(try ModelName(bad), bad)
        }
    }
}
