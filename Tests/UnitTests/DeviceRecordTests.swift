import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// Finding 4 of #28: each record a device keeps tells absent from damaged; damaged is an error
/// naming the file, never read as "nothing pending" or "nothing rejected".
final class DeviceRecordTests: XCTestCase {
    func testAMissingPendingCheckIsNoneAndAWrittenOneReadsBack() throws {
        let dir = InstallDirectory(root: TestSupport.scratch() + "/intent")
        XCTAssertNil(try PendingCheck.load(dir))
        try PendingCheck(version: "1.1.0", previous: "1.0.0").save(dir)
        let back = try PendingCheck.load(dir)
        XCTAssertEqual(back?.version, "1.1.0")
        XCTAssertEqual(back?.previous, "1.0.0")
    }

    func testADamagedPendingCheckIsAnErrorNamingTheFile() throws {
        let dir = InstallDirectory(root: TestSupport.scratch() + "/intent")
        for damage in ["{\"version\":", "{}", "{\"version\":\"not a version\"}"] {
            TestSupport.write(Array(damage.utf8), to: dir.root + "/" + PendingCheck.fileName)
            XCTAssertThrowsError(try PendingCheck.load(dir)) { XCTAssertTrue("\($0)".contains(PendingCheck.fileName) && "\($0)".contains("corrupt"), "\($0)") }
        }
    }

    func testADamagedRejectionListIsAnErrorNotAnEmptyList() throws {
        let dir = InstallDirectory(root: TestSupport.scratch() + "/intent")
        XCTAssertEqual(try RejectedVersions.load(dir).versions, [])
        for damage in ["[1,2]", "{\"nothex\":{\"version\":\"1.0.0\",\"reset\":0}}", "{\"\(String(repeating: "a", count: 64))\":{\"reset\":0}}"] {
            TestSupport.write(Array(damage.utf8), to: dir.root + "/" + RejectedVersions.fileName)
            XCTAssertThrowsError(try RejectedVersions.load(dir)) { XCTAssertTrue("\($0)".contains(RejectedVersions.fileName), "\($0)") }
        }
    }

    /// A window that wraps midnight holds the late evening and the early morning, not the day;
    /// its end minute is outside it.
    func testADownloadWindowPastMidnightHoldsBothEndsOfTheNight() throws {
        let w = try DownloadWindow(parsing: "22:30-04:00")
        XCTAssertEqual(w.description, "22:30-04:00")
        XCTAssertEqual([22 * 60 + 29, 22 * 60 + 30, 23 * 60 + 59, 0, 3 * 60 + 59, 4 * 60, 12 * 60].map(w.contains(minute:)),
                       [false, true, true, true, true, false, false])
        let day = try DownloadWindow(parsing: "01:00-05:00")
        XCTAssertEqual([59, 60, 299, 300].map(day.contains(minute:)), [false, true, true, false])
    }

}
