// A model's name: lowercase letters, digits, '-', '_', '.', and '/' between namespace segments.

/// A valid model name (namespaces separated by `/`).
public struct ModelName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name as text.
    public let value: String

    /// Checks `text` against the naming rules; the error says which rule it breaks.
    public init(_ text: String) throws {
        if let problem = Self.problem(text) { throw SLMError.argument("invalid model name \"\(text)\": \(problem)") }
        value = text
    }

    /// nil when `text` is not a valid model name (where "not a name" means "skip it").
    public init?(parsing text: String) {
        guard Self.problem(text) == nil else { return nil }
        value = text
    }

    /// What is wrong with `text` as a model name, or nil when nothing is.
    public static func problem(_ text: String) -> String? {
        guard !text.isEmpty, text.utf8.count <= 200 else {
            return "must be 1 to 200 characters"
        }
        for segment in text.split(separator: "/", omittingEmptySubsequences: false) {
            guard let first = segment.utf8.first else {
                return "empty segment between '/'"
            }
            guard (0x61...0x7a).contains(first) || (0x30...0x39).contains(first) else {
                return "each segment must start with a lowercase letter or digit"
            }
            for c in segment.utf8 {
                let ok = (0x61...0x7a).contains(c) || (0x30...0x39).contains(c) || c == 0x2d || c == 0x5f || c == 0x2e
                guard ok else {
                    return "only lowercase letters, digits, '-', '_', '.' and '/' are allowed"
                }
            }
        }
        return nil
    }

    /// The name as text.
    public var description: String { value }
    /// Names in text order.
    public static func < (a: ModelName, b: ModelName) -> Bool { a.value < b.value }
}
