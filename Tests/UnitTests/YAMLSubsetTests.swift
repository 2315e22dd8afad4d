import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

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
        // Not a JSON number: kept as the text the user wrote (Format.md's one rule).
        XCTAssertEqual(v["hyperparameters"]?["warmup"], .string(".1"))
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

/// More cards in the shapes real projects write.
final class ModelCardVarietyTests: XCTestCase {
    func testHuggingFaceStyleFrontMatterCard() throws {
        let v = try YAMLSubset.parse("""
        ---
        language:
        - en
        - de
        license: apache-2.0
        library_name: transformers
        tags:
          - text-classification
          - "pii"
        datasets:
        - acme/support-tickets
        metrics:
        - accuracy
        model-index:
        - name: intent-classifier
          results:
          - task:
              type: text-classification
            metrics:
            - type: accuracy
              value: 0.941
        """)
        XCTAssertEqual(v["language"], .array([.string("en"), .string("de")]))
        XCTAssertEqual(v["license"], .string("apache-2.0"))
        let result = v["model-index"]?.arrayValue?[0]["results"]?.arrayValue?[0]
        XCTAssertEqual(result?["task"]?["type"], .string("text-classification"))
        XCTAssertEqual(result?["metrics"]?.arrayValue?[0]["value"], .number("0.941"))
    }

    func testMLflowStyleProvenanceCard() throws {
        let v = try YAMLSubset.parse("""
        model_id: pii-redactor
        run_id: "8f14e45fceea167a"
        dataset:
          name: redaction-gold
          hash: 'sha256:e3b0c44298fc1c14'
          rows: 120000
        code:
          repo: git@example.com:ml/pii.git
          commit: 4f2a9c1
          dirty: false
        params:
          base_model: distilbert-base-uncased
          lr: 5.0e-5
          batch_size: 32
          dropout: 0.1
        environment:
          cuda: "12.1"
          torch: 2.3.1
        # evaluation happens later, see `slmstore metrics`
        """)
        XCTAssertEqual(v["run_id"], .string("8f14e45fceea167a"))
        XCTAssertEqual(v["dataset"]?["rows"], .number("120000"))
        XCTAssertEqual(v["code"]?["repo"], .string("git@example.com:ml/pii.git"))
        XCTAssertEqual(v["code"]?["dirty"], .bool(false))
        XCTAssertEqual(v["params"]?["lr"], .number("5.0e-5"))
        XCTAssertEqual(v["environment"]?["torch"], .string("2.3.1"))
    }

    func testEmptyValuesAndQuotedKeys() throws {
        let v = try YAMLSubset.parse("""
        "quoted key": 1
        'single': two
        empty:
        list:
          -
          - x
        url: https://example.com/a#frag
        """)
        XCTAssertEqual(v["quoted key"], .number("1"))
        XCTAssertEqual(v["single"], .string("two"))
        XCTAssertEqual(v["empty"], .null)
        XCTAssertEqual(v["list"], .array([.null, .string("x")]))
        XCTAssertEqual(v["url"], .string("https://example.com/a#frag"))
    }
}
