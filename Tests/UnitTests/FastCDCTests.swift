import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The chunker must cut exactly where the canonical FastCDC 2020 cuts.
final class FastCDCTests: XCTestCase {
    /// The generator the reference vectors were measured on (xorshift64*).
    static func referenceInput(count: Int = 1_048_576) -> [UInt8] {
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            s ^= s >> 12
            s ^= s << 25
            s ^= s >> 27
            let v = s &* 0x2545_F491_4F6C_DD1D
            for i in 0..<8 where out.count < count { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        return out
    }

    static func vectorsFile() -> String {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("shared/fastcdc-vectors.txt").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            let copy = dir.appendingPathComponent("Tests/Vectors/fastcdc-vectors.txt").path
            if FileManager.default.fileExists(atPath: copy) { return copy }
            dir = dir.deletingLastPathComponent()
        }
        return ""
    }

    func testGearTableMatchesDefinition() {
        XCTAssertEqual(GearTable.gear[0], 0x3b5d_3c7d_207e_37dc)
        XCTAssertEqual(GearTable.gear[255], 0xaabd_2b2a_4515_04e1)
    }

    func testReferenceInputMatchesGenerator() {
        XCTAssertEqual(Array(Self.referenceInput(count: 16)),
                       [0x7a, 0x48, 0x21, 0x9a, 0xe2, 0xb3, 0x83, 0x0d, 0x67, 0x9d, 0xfe, 0xf1, 0x79, 0x4c, 0xc4, 0x54])
    }

    func testEveryReferenceCutPointIsReproduced() throws {
        let path = Self.vectorsFile()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let input = Self.referenceInput()
        var checked = 0
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && line.contains(":") {
            let parts = line.split(separator: ":")
            let params = parts[0].split(separator: " ").map { Int($0)! }
            let expected = parts[1].split(separator: " ").map { Int($0)! }
            let p = ChunkerParameters(minSize: params[0], avgSize: params[1], maxSize: params[2], normalization: params[3])
            XCTAssertEqual(FastCDC(p).chunkLengths(input), expected, "parameters \(params)")
            checked += 1
        }
        XCTAssertEqual(checked, 6)
    }

    func testChunkingIsDeterministic() {
        let input = Self.referenceInput(count: 300_000)
        let c = FastCDC(.default)
        XCTAssertEqual(c.chunkLengths(input), c.chunkLengths(input))
    }
}
