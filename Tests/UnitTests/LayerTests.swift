import XCTest
import Foundation
import SLMFormats

/// The library's layers (ARCHITECTURE.md) are SwiftPM targets; the compiler refuses an import of
/// a target not listed as a dependency. These pin the order itself, so a dependency added to
/// Package.swift that runs up a layer fails here instead of passing quietly.
final class LayerTests: XCTestCase {
    /// Bottom to top; `SLMDevice` and `SLMPages` stand side by side on `SLMRemote`.
    let layers: [String: Set<String>] = [
        "SLMFormats": [],
        "SLMLocalStore": ["SLMFormats"],
        "SLMRemote": ["SLMFormats", "SLMLocalStore"],
        "SLMDevice": ["SLMFormats", "SLMLocalStore", "SLMRemote"],
        "SLMPages": ["SLMFormats", "SLMLocalStore", "SLMRemote"],
    ]

    var root: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }

    func testEachLayerImportsOnlyTheLayersBelowIt() throws {
        for (layer, allowed) in layers {
            let dir = root.appendingPathComponent("Sources/\(layer)")
            let files = FileManager.default.enumerator(atPath: dir.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
            XCTAssertFalse(files.isEmpty, "no sources under \(dir.path)")
            for file in files {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                for line in text.split(separator: "\n") where line.hasPrefix("import SLM") || line.hasPrefix("@_exported import SLM") {
                    let module = String(line.split(separator: " ").last!)
                    XCTAssertTrue(allowed.contains(module), "\(layer)/\(file) imports \(module), which is not below it")
                }
            }
        }
    }

    func testPackageSwiftGivesEachLayerOnlyTheLayersBelowIt() throws {
        let manifest = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        for (layer, allowed) in layers {
            let line = try XCTUnwrap(manifest.split(separator: "\n").first { $0.contains(".target(name: \"\(layer)\"") }, "\(layer) is not a target")
            let listed = Set(line.split(separator: "\"").map(String.init).filter { $0.hasPrefix("SLM") && $0 != layer })
            XCTAssertEqual(listed, allowed, "\(layer)'s dependencies in Package.swift")
        }
    }
}

/// Library messages name settings in the library's words; the command line names its options.
final class SettingNamesTests: XCTestCase {
    func testALibraryMessageAboutASettingNamesNoCommandLineOption() {
        for setting in SLMError.Setting.allCases {
            let message = SLMError.invalidSetting(setting, problem: "is wrong").description
            XCTAssertFalse(message.contains("--"), message)
            XCTAssertTrue(message.hasPrefix(setting.rawValue), message)
        }
    }

    func testTheCommandLineNamesAnOptionForEverySetting() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let main = try String(contentsOf: root.appendingPathComponent("Sources/slmstore/main.swift"), encoding: .utf8)
        for setting in SLMError.Setting.allCases {
            XCTAssertTrue(main.contains(".\(setting): (\"--"), "Sources/slmstore/main.swift names no option for \(setting)")
        }
    }
}
