import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The registry pages, published by push, served by nginx and read by a real headless browser
/// (Debian's chromium): the values a person looks for are there, no injected script runs, and
/// every link on every page answers 200.
final class WebTests: XCTestCase {
    var dir = ""
    var store = ""
    var remote = ""

    static let chromium = TestSupport.chromium

    override func setUpWithError() throws {
        guard Self.chromium != nil else { throw XCTSkip("chromium not installed (apt-get install chromium)") }
        dir = TestSupport.scratch()
        store = dir + "/store"
        remote = dir + "/remote"
        let m1 = SyntheticModel.llamaLike(targetBytes: 2 << 20)
        let (m2, _) = m1.fineTuned(fraction: 0.10)
        for (name, m) in [("v1", m1), ("v2", m2)] {
            try FileSystem.makeDirectories("\(dir)/\(name)")
            try m.write(to: "\(dir)/\(name)/model.safetensors")
            TestSupport.write(m.configJSON, to: "\(dir)/\(name)/config.json")
        }
        TestSupport.write(Array("{\"vocab\": [\"a\", \"b\"]}\n".utf8), to: dir + "/tok/tokenizer.json")
        let card = """
        model_id: intent-classifier
        description: "Routes tickets <script>document.title='pwned'</script> \\"><img src=x onerror=\\"document.title='pwned2'\\">"
        training:
          dataset_hash: sha256:9f2c1e0a77
          commit: 4b1d2e9c
          hyperparameters:
            learning_rate: 0.0003
        limitations: Ünïcödé and \(String(repeating: "long ", count: 400))
        """
        TestSupport.write(Array(card.utf8), to: dir + "/card.yaml")
        for args in [["add", "tok@1.0.0", dir + "/tok"],
                     ["add", "intent@1.0.0", dir + "/v1", "--card", dir + "/card.yaml", "--depends", "tok@^1"],
                     ["add", "intent@1.1.0", dir + "/v2", "--card", dir + "/card.yaml", "--depends", "tok@^1"],
                     ["metrics", "intent@1.1.0", "set", "accuracy=0.937", "f1=0.91", "--source", "eval-run-7"],
                     ["policy", "intent", "set", "production: accuracy >= 0.9"],
                     ["promote", "intent@1.0.0", "staging"],
                     ["promote", "intent@1.1.0", "production", "--skip-staging", "--reason", "beats 1.0.0 on eval-run-7"],
                     ["push", remote]] {
            let r = TestSupport.cli(args, store: store)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
        }
    }

    func browser(_ args: [String]) throws -> String { try TestSupport.browser(args, profile: dir + "/chromium") }

    func testPushedPagesShowTheProofAndNoInjectedScriptRuns() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let index = try browser(["--dump-dom", nginx.url + "/web/index.html"])
        XCTAssertTrue(index.contains("intent"), index)
        XCTAssertTrue(index.contains("tok"))
        XCTAssertTrue(index.contains("production 1.1.0"), "stage holders on the index")

        let model = try browser(["--dump-dom", nginx.url + "/web/models/intent/index.html"])
        XCTAssertTrue(model.contains("<title>intent</title>"))
        XCTAssertTrue(model.contains("refused") || model.contains(">ok<"), "stage history is listed")
        XCTAssertTrue(model.contains("staging") && model.contains("production"))
        XCTAssertTrue(model.contains("<svg"), "the per-release cost chart")
        XCTAssertTrue(model.contains("beats 1.0.0 on eval-run-7"), "why the stage moved")
        XCTAssertTrue(model.contains("production: passed") && model.contains("production: failed"), "gates per version")

        let version = try browser(["--dump-dom", nginx.url + "/web/models/intent/1.1.0.html"])
        XCTAssertTrue(version.contains("<title>intent 1.1.0</title>"), "an injected script would have changed the title")
        XCTAssertFalse(version.contains("pwned</title>"))
        XCTAssertTrue(version.contains("&lt;script&gt;document.title"), "the card's script shows as text")
        XCTAssertFalse(version.contains("<img src=\"x\""), "no element was injected")
        for expected in ["sha256:9f2c1e0a77", "4b1d2e9c", "0.0003", "accuracy", "0.937", "model.safetensors",
                         "model.layers.0.self_attn.q_proj.weight", "BF16", "tok@^1", "Ünïcödé", "What changed since the parent"] {
            XCTAssertTrue(version.contains(expected), "version page lacks \(expected)")
        }
        let sha = SHA256Hasher.hash(TestSupport.read(dir + "/v2/model.safetensors")).hex
        XCTAssertTrue(version.contains(sha), "files are listed with their SHA-256")

        let shot = dir + "/version-page.png"
        _ = try browser(["--window-size=1280,800", "--screenshot=\(shot)", nginx.url + "/web/models/intent/1.1.0.html"])
        XCTAssertGreaterThan(FileSystem.fileSize(shot) ?? 0, 10_000, "a screenshot was taken")
        if let results = ProcessInfo.processInfo.environment["SLMSTORE_RESULTS_DIR"] {
            try? FileSystem.makeDirectories(results)
            TestSupport.write(TestSupport.read(shot), to: results + "/registry-version-page.png")
        }
    }

    /// #45: a version page says whether the remote's signed release lists it (key, serial,
    /// expiry) or that the remote is unsigned; the download figure counts deltas as `diff`
    /// does; metric sources show; provenance shows once; a long tensor table is folded; a long
    /// history reason wraps without breaking the short cells.
    func testVersionPagesShowSignatureDeltasSourcesAndFoldLongTables() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        var version = try browser(["--dump-dom", nginx.url + "/web/models/intent/1.1.0.html"])
        XCTAssertTrue(version.contains("unsigned (the remote has no signed release)"), "signature status of an unsigned remote")
        XCTAssertTrue(version.contains("eval-run-7"), "the metric's source")
        XCTAssertTrue(version.contains("<details><summary>"), "the tensor table is folded")
        XCTAssertEqual(version.components(separatedBy: "sha256:9f2c1e0a77").count - 1, 1, "provenance shows once")
        let diff = try TestSupport.json(TestSupport.cli(["diff", "intent@1.0.0", "intent@1.1.0", "--json"], store: store))
        let fetch = try XCTUnwrap(diff["bytes_to_fetch"]?.uint64Value)
        XCTAssertTrue(version.contains("downloads <strong>\(HTML.bytes(fetch))</strong>"), "the page's figure is diff's \(fetch) bytes")
        let model = try browser(["--dump-dom", nginx.url + "/web/models/intent/index.html"])
        XCTAssertTrue(model.contains("<td class=\"nowrap\">production</td>") && model.contains("<td class=\"reason\">"), "history cells")

        XCTAssertEqual(TestSupport.cli(["keygen", dir + "/key"]).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--sign", dir + "/key"], store: store).status, 0)
        let release = try SignedRelease.decode(TestSupport.read(remote + "/release.json"), source: "r")
        version = try browser(["--dump-dom", nginx.url + "/web/models/intent/1.1.0.html"])
        XCTAssertTrue(version.contains("signed: release serial \(release.serial), key \(release.signatures[0].key.hex.prefix(16))"), "signature status")
    }

    func testEveryLinkOnEveryPageAnswers200() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        var pages: [String] = []
        func walk(_ rel: String) throws {
            for name in try FileSystem.listDirectory(remote + "/" + rel) {
                let child = rel + "/" + name
                if FileSystem.isDirectory(remote + "/" + child) { try walk(child) } else if name.hasSuffix(".html") { pages.append(child) }
            }
        }
        try walk("web")
        XCTAssertEqual(pages.count, 6, "index, two model pages, three version pages: \(pages)")
        var checked = 0
        for page in pages {
            let html = String(decoding: TestSupport.read(remote + "/" + page), as: UTF8.self)
            let base = URL(string: nginx.url + "/" + page)!
            var rest = html[...]
            while let r = rest.range(of: "href=\"") {
                let tail = rest[r.upperBound...]
                guard let end = tail.firstIndex(of: "\"") else { break }
                let href = String(tail[..<end])
                rest = tail[end...]
                let url = URL(string: href, relativeTo: base)!.absoluteURL
                let (status, _) = try httpGet(url)
                XCTAssertEqual(status, 200, "\(page) links to \(href) (\(url))")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 15)
    }

    func httpGet(_ url: URL) throws -> (Int, Data) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import sys, urllib.request\ntry:\n print(urllib.request.urlopen(sys.argv[1]).status)\nexcept Exception as e:\n print(getattr(e, 'code', 0))", url.absoluteString]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (Int(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, data)
    }

    func testTheSiteOfALocalStoreOpensFromDisk() throws {
        let r = TestSupport.cli(["web", dir + "/site", "--json"], store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
        let dom = try browser(["--dump-dom", "file://\(dir)/site/web/models/intent/1.0.0.html"])
        XCTAssertTrue(dom.contains("<title>intent 1.0.0</title>"))
        XCTAssertTrue(dom.contains("First version of this model"))
        let index = try browser(["--dump-dom", "file://\(dir)/site/web/index.html"])
        XCTAssertTrue(index.contains("3 models") == false && index.contains("2 models"), "tok and intent")
    }

    func testAPushRewritesOnlyNewVersionPagesBesideModelPagesAndTheIndex() throws {
        let old = remote + "/web/models/intent/1.0.0.html"
        let before = try FileManager.default.attributesOfItem(atPath: old)[.modificationDate] as? Date
        XCTAssertEqual(TestSupport.cli(["add", "intent@1.2.0", dir + "/v2", "--card", dir + "/card.yaml", "--depends", "tok@^1"], store: store).status, 0)
        let r = TestSupport.cli(["push", remote, "--json"], store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
        // intent's and tok's model pages, intent@1.2.0's page, the index.
        XCTAssertEqual(try TestSupport.json(r)["pages"]?.uint64Value, 4)
        XCTAssertTrue(FileSystem.exists(remote + "/web/models/intent/1.2.0.html"))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: old)[.modificationDate] as? Date, before)
        let model = String(decoding: TestSupport.read(remote + "/web/models/intent/index.html"), as: UTF8.self)
        XCTAssertTrue(model.contains("1.2.0.html"))
    }

    func testPushWithNoWebWritesNoPages() throws {
        let other = dir + "/remote-noweb"
        XCTAssertEqual(TestSupport.cli(["push", other, "--no-web"], store: store).status, 0)
        XCTAssertFalse(FileSystem.exists(other + "/web"))
    }
}
