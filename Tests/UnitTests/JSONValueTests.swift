import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

final class JSONValueTests: XCTestCase {
    func testCanonicalFormSortsKeysAndKeepsNumberText() throws {
        let v = try JSONValue.parse(#"{ "b": 1.50, "a": [true, null, "x\ny"], "é": 3e-4 }"#)
        XCTAssertEqual(v.canonicalString(), #"{"a":[true,null,"x\ny"],"b":1.50,"é":3e-4}"#)
    }

    func testDeepNestingIsRefused() {
        let deep = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
        XCTAssertThrowsError(try JSONValue.parse(deep))
    }

    func testDuplicateKeysAreRefused() {
        XCTAssertThrowsError(try JSONValue.parse(#"{"a":1,"a":2}"#))
    }

    func testEscapesRoundTrip() throws {
        let v = JSONValue.string("q\"b\\\u{01}\t😀")
        XCTAssertEqual(try JSONValue.parse(v.canonicalString()), v)
    }
}
