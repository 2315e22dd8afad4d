import XCTest
@testable import SLMStoreKit

/// The model-card YAML subset: what real cards use parses; everything else is refused with its
/// line and column.
final class YAMLSubsetTests: XCTestCase {
    func testTypicalModelCardParses() throws {
        let card = """
        # model_card.yaml
        model_id: intent-classifier-v2.2   # trailing comment
        dataset_hash: "sha256:9f86d081884c7d659a2feaa0c55ad015"
        training_code_commit: 'a1b2c3d'
        hyperparameters:
          learning_rate: 3e-4
          epochs: 3
          warmup: .1
          schedule: cosine
          use_lora: true
          seed: ~
        environment:
          python: "3.11"
          packages:
            - torch==2.3.0
            - transformers==4.41.0
        evaluations:
          - name: heldout
            accuracy: 0.941
          - name: adversarial
            accuracy: 0.88
        notes: |
          Fine-tuned on support tickets.
          Second line.
        summary: >
          folded
          text
        """
        let v = try YAMLSubset.parse(card)
        XCTAssertEqual(v["model_id"], .string("intent-classifier-v2.2"))
        XCTAssertEqual(v["dataset_hash"], .string("sha256:9f86d081884c7d659a2feaa0c55ad015"))
        XCTAssertEqual(v["training_code_commit"], .string("a1b2c3d"))
        XCTAssertEqual(v["hyperparameters"]?["learning_rate"], .number("3e-4"))
        XCTAssertEqual(v["hyperparameters"]?["epochs"], .number("3"))
        XCTAssertEqual(v["hyperparameters"]?["warmup"], .number("0.1"))
        XCTAssertEqual(v["hyperparameters"]?["use_lora"], .bool(true))
        XCTAssertEqual(v["hyperparameters"]?["seed"], .null)
        XCTAssertEqual(v["environment"]?["python"], .string("3.11"))
        XCTAssertEqual(v["environment"]?["packages"], .array([.string("torch==2.3.0"), .string("transformers==4.41.0")]))
        XCTAssertEqual(v["evaluations"]?.arrayValue?.count, 2)
        XCTAssertEqual(v["evaluations"]?.arrayValue?[1]["accuracy"], .number("0.88"))
        XCTAssertEqual(v["notes"], .string("Fine-tuned on support tickets.\nSecond line.\n"))
        XCTAssertEqual(v["summary"], .string("folded text\n"))
    }

    func testListsOfMapsAndNestedListsParse() throws {
        let v = try YAMLSubset.parse("""
        ---
        authors:
        - name: "Ana"
          roles:
            - training
            - eval
        - name: Bo
        tags: []
        """.replacingOccurrences(of: "tags: []", with: "tags:\n  - x"))
        XCTAssertEqual(v["authors"]?.arrayValue?[0]["roles"], .array([.string("training"), .string("eval")]))
        XCTAssertEqual(v["authors"]?.arrayValue?[1]["name"], .string("Bo"))
        XCTAssertEqual(v["tags"], .array([.string("x")]))
    }

    func assertRejected(_ text: String, line: Int, column: Int, _ fragment: String, file: StaticString = #filePath, l: UInt = #line) {
        XCTAssertThrowsError(try YAMLSubset.parse(text), file: file, line: l) { e in
            guard let e = e as? YAMLSubset.ParseError else { return XCTFail("\(e)", file: file, line: l) }
            XCTAssertEqual(e.line, line, "\(e)", file: file, line: l)
            XCTAssertEqual(e.column, column, "\(e)", file: file, line: l)
            XCTAssertTrue(e.message.contains(fragment), "\(e)", file: file, line: l)
        }
    }

    func testUnsupportedFeaturesGiveLineAndColumn() {
        assertRejected("a: 1\nb: &anchor 2\n", line: 2, column: 4, "anchors")
        assertRejected("a: 1\nb: *ref\n", line: 2, column: 4, "aliases")
        assertRejected("a: [1, 2]\n", line: 1, column: 4, "flow collections")
        assertRejected("a: {x: 1}\n", line: 1, column: 4, "flow collections")
        assertRejected("a: 1\n---\nb: 2\n", line: 2, column: 1, "multiple documents")
        assertRejected("a:\n\tb: 1\n", line: 2, column: 1, "tab")
        assertRejected("a: !!str 1\n", line: 1, column: 4, "tags")
        assertRejected("a: 1\na: 2\n", line: 2, column: 1, "duplicate key")
        assertRejected("a: 1\n   b: 2\n", line: 2, column: 4, "unexpected indentation")
        assertRejected("just text\n", line: 1, column: 1, "expected \"key: value\"")
        assertRejected("a: \"open\n", line: 1, column: 4, "unterminated")
    }
}
