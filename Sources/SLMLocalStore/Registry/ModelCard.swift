// Model cards: read from YAML (the block subset) or JSON, checked against the store's list of
// required keys, and stored inside the version object so its id covers them.

import SLMFormats

/// Model cards: the provenance a version records (YAML or JSON, at most 1 MiB).
public enum ModelCard {
    /// Largest card accepted.
    public static let maxSize = 1 << 20

    /// The card at `path` (JSON when the name ends in .json, else the YAML subset) as a JSON
    /// value; errors name the file, line and column.
    public static func load(path: String) throws -> JSONValue {
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path, limit: maxSize) } catch let e as SLMError {
            if case .io = e.kind { throw SLMError.input(path: path, problem: "cannot read model card") }
            if case let .damaged(_, problem) = e.kind, problem.hasPrefix("not a regular file") { throw SLMError.input(path: path, problem: "model card is \(problem)") }
            throw SLMError.input(path: path, problem: "model card larger than \(maxSize) bytes")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw SLMError.input(path: path, problem: "model card is not UTF-8") }
        let value: JSONValue
        if path.hasSuffix(".json") {
            do { value = try JSONValue.parse(bytes) } catch { throw SLMError.input(path: path, problem: "not valid JSON").caused(by: error) }
        } else {
            do { value = try YAMLSubset.parse(text) } catch let e as YAMLSubset.ParseError {
                throw SLMError.input(path: path, problem: "invalid model card: \(e)")
            }
        }
        guard value.memberList != nil else { throw SLMError.input(path: path, problem: "a model card must be a map of keys to values") }
        return value
    }

    /// Dotted key paths (e.g. "training.dataset_hash") that every card must have.
    public static func validate(_ card: JSONValue, required: [String], source: String) throws {
        var missing: [String] = []
        for key in required {
            var node: JSONValue? = card
            for part in key.split(separator: ".") { node = node?[String(part)] }
            if node == nil || node == .null { missing.append(key) }
        }
        if !missing.isEmpty {
            throw SLMError.input(path: source, problem: "model card lacks required keys: \(missing.joined(separator: ", ")) (required by this store)").remedied(by: .listCardKeys)
        }
    }
}

extension Store {
    var cardRequiredPath: String { registryDirectory + "/@card-required" }

    /// The card keys every new version of this store must have (dotted paths), none by default.
    public func requiredCardKeys() throws -> [String] {
        guard FileSystem.exists(cardRequiredPath) else { return [] }
        let v = try JSONValue.parse(try FileSystem.readFile(cardRequiredPath, limit: 1 << 20))
        return (v.arrayValue ?? []).compactMap(\.stringValue)
    }

    /// Sets the card keys every new version must have.
    public func setRequiredCardKeys(_ keys: [String]) throws {
        for k in keys where k.isEmpty || k.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            throw SLMError.argument("invalid card key \"\(k)\": use names separated by dots, e.g. training.dataset_hash")
        }
        let refs = try refsLock()
        defer { refs.unlock() }
        try FileSystem.makeDirectories(registryDirectory)
        try FileSystem.writeAtomically(JSONValue.array(keys.map { .string($0) }).canonicalBytes() + [0x0a], to: cardRequiredPath)
    }
}
