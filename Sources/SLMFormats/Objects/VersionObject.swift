// A model version: name, SemVer, tree id, parent, creation time and provenance, as canonical
// JSON. Its id is the SHA-256 of those bytes, so it covers the tree and every piece of metadata.

/// Another model a version needs, and which of its versions will do.
public struct Dependency: Equatable, Sendable {
    /// The model depended on.
    public var name: String
    /// A SemVer range, an exact version, or a stage name, as the user wrote it.
    public var range: String

    /// A dependency on `name` at `range`.
    public init(name: String, range: String) {
        self.name = name
        self.range = range
    }

    /// The one order a writer records (by name, as UTF-8 bytes), so the same dependencies given
    /// in another order make the same version id; a model named twice is refused.
    public static func canonical(_ deps: [Dependency]) throws -> [Dependency] {
        var seen = Set<[UInt8]>()
        for d in deps where !seen.insert(Array(d.name.utf8)).inserted {
            throw SLMError.argument("dependency \(d.name) is given more than once; name each model once")
        }
        return deps.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }
}

/// A version object: what a version is and where it came from (Format.md). Its id is the SHA-256 of
/// `encoded()`.
public struct VersionObject: Equatable, Sendable {
    /// The largest version object a reader accepts.
    public static let maxEncodedSize = 16 * 1024 * 1024
    /// JSON values a version object may hold (§9 counting rule): twice what a 1 MiB card can.
    public static let maxValues = 600_000

    /// The model's name.
    public var name: String
    /// The semantic version.
    public var version: SemVer
    /// The id of the tree object listing the version's files.
    public var tree: SHA256Digest
    /// The version this one was added after (the newest earlier version of the model), if any.
    public var parent: SHA256Digest?
    /// RFC 3339 UTC, second precision: "2026-11-29T04:05:50Z".
    public var created: String
    /// Who made it, unasked: user@host and the slmstore version.
    public var addedBy: String
    /// The slmstore release that wrote it.
    public var tool: String
    /// The model card (provenance the user supplied), if any.
    public var card: JSONValue?
    /// Other models this version needs, in canonical order.
    public var dependencies: [Dependency]

    /// A version object from its fields, as `add` makes one.
    public init(name: String, version: SemVer, tree: SHA256Digest, parent: SHA256Digest?, created: String,
                addedBy: String, tool: String, card: JSONValue? = nil, dependencies: [Dependency] = []) {
        self.name = name
        self.version = version
        self.tree = tree
        self.parent = parent
        self.created = created
        self.addedBy = addedBy
        self.tool = tool
        self.card = card
        self.dependencies = dependencies
    }

    /// The object as the JSON value Format.md specifies.
    public var json: JSONValue {
        .object([
            "type": .string("version"),
            "format": .int(1),
            "name": .string(name),
            "version": .string(version.description),
            "tree": .string(tree.hex),
            "parent": parent.map { .string($0.hex) } ?? .null,
            "created": .string(created),
            "added_by": .string(addedBy),
            "tool": .string(tool),
            "card": card ?? .null,
            "dependencies": .array(dependencies.map { .object(["name": .string($0.name), "range": .string($0.range)]) }),
        ])
    }

    /// The canonical JSON bytes stored under objects/ and hashed for the id.
    public func encoded() -> [UInt8] { json.canonicalBytes() }

    /// The version id: the SHA-256 of the canonical bytes.
    public var id: SHA256Digest { SHA256Hasher.hash(encoded()) }

    /// Decodes and checks a version object; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws -> VersionObject {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "version object: \(p)") }
        let v: JSONValue
        // A writer's version object holds its card (at most 1 MiB of YAML or JSON, some 300,000
        // values at most) and a few fields: more is a document built to inflate a parse.
        do { v = try JSONValue.parse(bytes, maxValues: maxValues) } catch { throw bad("not valid JSON").caused(by: error) }
        guard v["type"]?.stringValue == "version" else { throw bad("not a version object") }
        guard v["format"]?.uint64Value == 1 else { throw bad("format \(v["format"].map { $0.canonicalString() } ?? "missing") is not supported") }
        guard let name = v["name"]?.stringValue, ModelName(parsing: name) != nil else { throw bad("bad name") }
        guard let vs = v["version"]?.stringValue, let version = SemVer(parsing: vs) else { throw bad("bad version") }
        guard let treeHex = v["tree"]?.stringValue, let tree = SHA256Digest(hex: treeHex) else { throw bad("bad tree id") }
        var parent: SHA256Digest? = nil
        if let p = v["parent"], p != .null {
            guard let ph = p.stringValue, let pd = SHA256Digest(hex: ph) else { throw bad("bad parent id") }
            parent = pd
        }
        guard let created = v["created"]?.stringValue else { throw bad("missing created") }
        var deps: [Dependency] = []
        for d in v["dependencies"]?.arrayValue ?? [] {
            guard let n = d["name"]?.stringValue, let r = d["range"]?.stringValue else { throw bad("bad dependency") }
            deps.append(Dependency(name: n, range: r))
        }
        let card = v["card"].flatMap { $0 == .null ? nil : $0 }
        return VersionObject(name: name, version: version, tree: tree, parent: parent, created: created,
                             addedBy: v["added_by"]?.stringValue ?? "", tool: v["tool"]?.stringValue ?? "",
                             card: card, dependencies: deps)
    }
}
