import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Rendering the registry pages: escaping, links that stay inside web/, and the cost of a
/// large registry.
final class RegistrySiteTests: XCTestCase {
    func testEveryValueIsEscaped() {
        XCTAssertEqual(HTML.escape("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;")
        let page = RegistrySite.indexPage([SiteIndexRow(name: "a<b", versions: 1, stages: ["x\"y": "1.0.0"], latest: "1.0.0",
                                                        latestSize: 1, lastChange: "<now>")], project: "<p>")
        XCTAssertFalse(page.contains("a<b"))
        XCTAssertFalse(page.contains("<now>"))
        XCTAssertFalse(page.contains("<p>") && page.contains("in <p>"))
    }

    func testLinksFromNamespacedModelsClimbBackToTheIndex() {
        XCTAssertEqual(SiteLayout.root(fromModel: "acme/intent"), "../../../")
        XCTAssertEqual(SiteLayout.root(fromModel: "intent"), "../../")
    }

    func testProvenanceIsFoundWhereverTheCardPutsIt() {
        let card = JSONValue.object(["training": .object(["dataset_hash": .string("h"), "commit": .string("c"),
                                                          "epochs": .number("3")]), "base_model": .string("llama")])
        XCTAssertEqual(RegistrySite.provenanceFields(card).map(\.0), ["base_model", "training.commit", "training.dataset_hash"])
    }

    func testARegistryOf200ModelsAnd50VersionsRendersFastAndTheIndexStaysSmall() {
        let started = Date()
        let rows = (0..<200).map { i in
            SiteIndexRow(name: "team-\(i % 7)/model-\(i)", versions: 50, stages: ["production": "1.49.0", "staging": "1.50.0"],
                         latest: "1.50.0", latestSize: 1 << 30, lastChange: "2026-11-29T10:00:00Z")
        }
        let index = RegistrySite.indexPage(rows, project: "fleet")
        let versions = (0..<50).map { SiteVersionSummary(version: "1.\($0).0", created: "2026-11-29T10:00:00Z", addedBy: "ci@runner",
                                                          rawBytes: 1 << 30, storedBytes: 700 << 20, newStoredBytes: 70 << 20) }
        let history = (0..<100).map { HistoryRecord(time: "2026-11-29T10:00:00Z", by: "ci", action: "promote", stage: "production",
                                                    from: "1.\($0).0", to: "1.\($0 + 1).0", outcome: "ok") }
        // What one push renders for the model it publishes: the model page and its 50 version pages.
        let model = RegistrySite.modelPage(SiteModel(name: "team-1/model-1", versions: versions, stages: ["production": "1.49.0"],
                                                     history: history, policy: ""))
        var total = index.utf8.count + model.utf8.count
        for v in versions {
            let page = RegistrySite.versionPage(SiteVersion(name: "team-1/model-1", version: v.version, id: String(repeating: "a", count: 64),
                created: v.created, addedBy: v.addedBy, tool: "slmstore", parent: nil, parentLinked: false, stages: [], card: nil, metrics: [:],
                dependencies: [], files: [.init(path: "model.safetensors", size: 1 << 30, sha256: String(repeating: "b", count: 64))],
                tensors: (0..<300).map { .init(file: "model.safetensors", name: "model.layers.\($0).weight", dtype: "BF16", shape: [2048, 2048]) },
                rawBytes: v.rawBytes, storedBytes: v.storedBytes, newStoredBytes: v.newStoredBytes, change: nil))
            total += page.utf8.count
        }
        XCTAssertLessThan(index.utf8.count, 500 << 10, "index page of 200 models")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0, "rendering \(total) bytes of pages")
    }
}
