import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMDevice
import SLMTestSupport

/// #45: the README's quick start, run as a newcomer would (paths moved into a scratch
/// directory, the static server a real nginx on loopback): from nothing to a device pull.
final class QuickStartTests: XCTestCase {
    func testTheReadmeQuickStartRunsFromNothingToADevicePull() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = readme.range(of: "<!-- quick start"), let end = readme.range(of: "<!-- end quick start -->") else {
            return XCTFail("README has no quick start block")
        }
        let lines = readme[start.upperBound..<end.lowerBound].split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("slmstore ") && !$0.contains("huggingface") }
        XCTAssertGreaterThanOrEqual(lines.count, 6, "\(lines)")
        let dir = TestSupport.scratch()
        try FileSystem.makeDirectories(dir + "/srv/slm/models")
        let nginx = try NginxServer(serving: dir + "/srv/slm/models")
        defer { nginx.stop() }
        for line in lines {
            let command = line.replacingOccurrences(of: "/tmp/slm-demo", with: dir + "/demo")
                .replacingOccurrences(of: "/srv/slm", with: dir + "/srv/slm")
                .replacingOccurrences(of: "/var/lib/slm", with: dir + "/device")
                .replacingOccurrences(of: "http://127.0.0.1:8080", with: nginx.url)
            var words = command.split(separator: " ").map(String.init)
            words.removeFirst()  // "slmstore"
            let r = TestSupport.cli(words, store: dir + "/store")
            XCTAssertEqual(r.status, 0, "\(line): \(r.stderr)")
        }
        XCTAssertEqual(InstallDirectory(root: dir + "/device/intent").current(), "1.1.0")
    }
}
