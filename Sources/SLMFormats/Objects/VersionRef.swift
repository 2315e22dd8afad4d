// What a user writes to name a version: NAME@VERSION, NAME@<selector> (a range, `latest` or a
// stage, resolved by the registry), or a version id (full hex or a prefix of at least 8).

/// A reference to a version, as parsed from what a user wrote.
public enum VersionRef: Equatable, Sendable, CustomStringConvertible {
    /// NAME@VERSION: one version.
    case exact(ModelName, SemVer)
    /// NAME@STAGE, NAME@RANGE or NAME@latest: resolved against what a store or manifest holds.
    case selector(ModelName, String)
    /// A version id or a prefix of its hex.
    case id(String)

    /// Parses NAME@VERSION (a leading `v` allowed), NAME@SELECTOR or a hex version id; the error
    /// says which form was expected.
    public static func parse(_ text: String) throws -> VersionRef {
        if let at = text.firstIndex(of: "@") {
            let name = try ModelName(String(text[..<at]))
            let rest = String(text[text.index(after: at)...])
            guard !rest.isEmpty else { throw SLMError.argument("invalid reference \"\(text)\": nothing after '@'") }
            if let v = SemVer(parsing: rest) { return .exact(name, v) }
            if rest.hasPrefix("v"), let v = SemVer(parsing: String(rest.dropFirst())) { return .exact(name, v) }
            return .selector(name, rest)
        }
        let lower = text.lowercased()
        if lower.utf8.count >= 8, lower.utf8.count <= 64, Hex.isHex(Substring(lower)) { return .id(lower) }
        if !lower.isEmpty, lower.utf8.count < 8, Hex.isHex(Substring(lower)) {
            // It looks like the start of a version id, too short to be told from others.
            throw SLMError.argument("invalid reference \"\(text)\": a version id prefix needs at least 8 hex digits (this has \(lower.utf8.count)); or, for a model named \(text), say which version, e.g. \(text)@1.0.0")
        }
        if ModelName(parsing: text) != nil {
            throw SLMError.argument("invalid reference \"\(text)\": say which version, e.g. \(text)@1.0.0 (or a version id)")
        }
        throw SLMError.argument("invalid reference \"\(text)\": expected NAME@VERSION or a version id (at least 8 hex digits)")
    }

    /// The reference as a user would write it.
    public var description: String {
        switch self {
        case let .exact(n, v): return "\(n)@\(v)"
        case let .selector(n, s): return "\(n)@\(s)"
        case let .id(p): return p
        }
    }
}
