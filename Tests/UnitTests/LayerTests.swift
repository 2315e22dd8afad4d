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

/// Errors keep what caused them and what would get past them, and the library's messages leave
/// command-line wording to the command layer.
final class ErrorStructureTests: XCTestCase {
    func testACausedErrorKeepsItsOwnKindCodeAndTheCauseWhole() {
        let cause = SLMError.io(path: "/s/objects/x", operation: "read", errno: EIO)
        let e = SLMError.damaged(path: "/s/objects/x", problem: "version object").caused(by: cause)
        XCTAssertEqual(e.kind, .damaged(path: "/s/objects/x", problem: "version object"))
        XCTAssertEqual(e.code, "damaged")
        XCTAssertEqual(e.underlying, cause)
        XCTAssertTrue(e.description.hasPrefix("/s/objects/x: corrupt: version object: /s/objects/x: read failed"), e.description)
    }

    func testAnErrorFromOutsideTheLibraryBecomesAFailedCause() {
        struct Outside: Error, CustomStringConvertible { var description: String { "at byte 3: unexpected character" } }
        let e = SLMError.damaged(path: "m.json", problem: "manifest").caused(by: Outside())
        XCTAssertEqual(e.underlying, .failed("at byte 3: unexpected character"))
        XCTAssertEqual(e.description, "m.json: corrupt: manifest: at byte 3: unexpected character")
    }

    func testRetryAdviceFollowsTheOuterErrorNotItsCause() {
        let transient = SLMError.transport(url: "https://h/x", problem: "reset", transient: true)
        XCTAssertTrue(transient.remedied(by: .trustPrivateCA).isTransient)
        XCTAssertFalse(SLMError.remote(url: "https://h/x", problem: "bad").caused(by: transient).isTransient)
    }

    func testRemediesAreListedInTheOrderTheyWereAttached() {
        let e = SLMError.conflict("cannot promote").remedied(by: .skipStaging).remedied(by: .allowBreaking)
        XCTAssertEqual(e.remedies, [.skipStaging, .allowBreaking])
        XCTAssertEqual(e.kind, .conflict("cannot promote"))
        XCTAssertEqual(e.code, "conflict")
    }

    func testMapKindRewordsTheErrorAndKeepsWhatWasAttached() {
        let e = SLMError.transport(url: "https://signed?X-Amz-Signature=s", problem: "TLS", transient: false)
            .remedied(by: .presentClientCertificate)
        let mapped = e.mapKind { _ in .transport(url: "s3://b/k", problem: "TLS", transient: false) }
        XCTAssertEqual(mapped.remedies, [.presentClientCertificate])
        XCTAssertFalse(mapped.description.contains("Signature"), mapped.description)
    }

    func testARemedyInTheLibrarysWordsNamesNoCommandLineOption() {
        let remedies: [SLMError.Remedy] = SLMError.Setting.allCases.flatMap { [.given($0), .raise($0)] } + [
            .overwrite, .skipStaging, .allowBreaking, .signRelease, .signFromScratch, .trustPrivateCA,
            .presentClientCertificate, .sendCredentials, .publish, .renewRelease, .verifyStore,
            .createStore(path: "/s"), .generateKey, .listCardKeys, .confirmRemoteID("site-a"), .enrollDevice, .chooseRevision, .removeAnyway]
        for r in remedies {
            let text = SLMError.failed("stopped").remedied(by: r).description
            XCTAssertFalse(text.contains("--") || text.contains("`slmstore"), text)
        }
    }

    /// `catch SLMError.notFound` matches only an unwrapped error: one a layer wrapped with a cause
    /// or a remedy slips past it. The library matches errors by `kind` (#43).
    func testNoCatchInTheLibraryMatchesARawErrorCase() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let raw = try NSRegularExpression(pattern: #"catch (let )?SLMError\.|if case (let )?SLMError\.|case \.[a-zA-Z]+[^=]*= (e|error)\s*\{"#)
        var found: [String] = []
        let sources = root.appendingPathComponent("Sources")
        for case let file as String in FileManager.default.enumerator(atPath: sources.path)! where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where raw.firstMatch(in: String(line), range: NSRange(line.startIndex..., in: line)) != nil {
                found.append("\(file):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        XCTAssertEqual(found, [], "match SLMError by kind")
    }

    /// Every `package` declaration and every case of a public or package enum says what it is
    /// in a `///` line (#43): a layer above reads them without opening the code.
    func testEveryPackageDeclarationAndPublicEnumCaseIsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let sources = root.appendingPathComponent("Sources")
        let declaration = try NSRegularExpression(pattern: #"^(@\w+(\([^)]*\))?\s+)*package\s+((static|final|mutating|private\(set\))\s+)*(func|var|let|struct|class|enum|init|protocol|typealias)\b"#)
        let enumStart = try NSRegularExpression(pattern: #"^(public|package)\s+(indirect\s+)?enum\b"#)
        var missing: [String] = []
        for case let file as String in FileManager.default.enumerator(atPath: sources.path)! where file.hasSuffix(".swift") && file.hasPrefix("SLM") {
            let lines = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var depth = 0
            var enums: [Int] = []
            func documented(_ i: Int) -> Bool {
                var j = i - 1
                while j >= 0, lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("@") { j -= 1 }
                return j >= 0 && lines[j].trimmingCharacters(in: .whitespaces).hasPrefix("///")
            }
            for (i, line) in lines.enumerated() {
                let t = line.trimmingCharacters(in: .whitespaces)
                let range = NSRange(t.startIndex..., in: t)
                if enumStart.firstMatch(in: t, range: range) != nil { enums.append(depth) }
                let isCase = enums.last.map { depth == $0 + 1 } ?? false && (t.hasPrefix("case ") || t.hasPrefix("indirect case "))
                if (declaration.firstMatch(in: t, range: range) != nil || isCase) && !documented(i) { missing.append("\(file):\(i + 1): \(t.prefix(80))") }
                depth += line.filter { $0 == "{" }.count - line.filter { $0 == "}" }.count
                while let last = enums.last, depth <= last { enums.removeLast() }
            }
        }
        XCTAssertEqual(missing, [], "undocumented package declarations or public enum cases")
    }

    /// #43: a command's closure reads in one screen: parsing, the call, the output; anything
    /// longer belongs in a named function.
    func testNoCommandClosureIsLongerThanSixtyLines() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let cli = root.appendingPathComponent("Sources/slmstore")
        var long: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: cli.path) where file.hasSuffix(".swift") {
            let lines = try String(contentsOf: cli.appendingPathComponent(file), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            var name: String? = nil
            var start: Int? = nil
            for (i, line) in lines.enumerated() {
                if line.hasPrefix("let "), line.contains("= Command(") { name = String(line.dropFirst(4).prefix { $0 != " " }) }
                if name != nil, line.hasPrefix(") {"), line.hasSuffix(" in") { start = i }
                if let s = start, line == "}" {
                    if i - s - 1 > 60 { long.append("\(file): \(name ?? "?") is \(i - s - 1) lines") }
                    (name, start) = (nil, nil)
                }
            }
        }
        XCTAssertEqual(long, [])
    }

    func testNoStringInTheLibraryNamesACommandLineFlagOrCommand() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let sources = root.appendingPathComponent("Sources")
        let literal = try NSRegularExpression(pattern: #""(?:[^"\\]|\\.)*""#)
        let cliWords = try NSRegularExpression(pattern: #"(^|[\s(`'])--[a-z]|`slmstore "#)
        var found: [String] = []
        for target in try FileManager.default.contentsOfDirectory(atPath: sources.path) where target.hasPrefix("SLM") {
            let dir = sources.appendingPathComponent(target)
            for case let file as String in FileManager.default.enumerator(atPath: dir.path)! where file.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let trimmed = line.trimmingCharacters(in: .whitespaces)
                    guard !trimmed.hasPrefix("//") else { continue }
                    let code = String(line.components(separatedBy: " // ")[0])
                    let range = NSRange(code.startIndex..., in: code)
                    for m in literal.matches(in: code, range: range) {
                        let s = (code as NSString).substring(with: m.range)
                        if cliWords.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil { found.append("\(target)/\(file):\(n + 1): \(s)") }
                    }
                }
            }
        }
        XCTAssertEqual(found, [], "library strings that name command-line flags or commands (word them as a Remedy)")
    }
}
