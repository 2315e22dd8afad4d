// A JSON value with a strict, bounded parser and a canonical serializer.
// Numbers keep their literal text so a re-encoded document hashes the same on every machine.

/// A JSON document or value.
public enum JSONValue: Equatable, Sendable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// The number's literal text, validated against the JSON grammar.
    case number(String)
    /// A string, unescaped.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object whose keys are distinct as Swift strings.
    case object([String: JSONValue])
    /// An object holding keys that Swift's String equality would merge: spellings that differ
    /// only in Unicode normalization ("é" precomposed and "e" + U+0301) are different UTF-8, so
    /// different keys. Members in UTF-8 key order. `JSONObjectBuilder` picks this form only when
    /// it is needed; everything else is `.object`.
    case members([JSONMember])

    /// An integer as a JSON number.
    public static func int<T: BinaryInteger>(_ v: T) -> JSONValue { .number(String(v)) }

    /// A double as a JSON number (integral values without a fraction; NaN and infinities as null).
    public static func double(_ v: Double) -> JSONValue {
        if v.isFinite, v == v.rounded(), abs(v) < 1e15 { return .number(String(Int64(v))) }
        return v.isFinite ? .number("\(v)") : .null
    }

    /// An object's member named exactly `key` (by UTF-8 bytes); nil for other values.
    public subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        if case let .members(m) = self {
            let bytes = Array(key.utf8)
            return m.first { Array($0.key.utf8) == bytes }?.value
        }
        return nil
    }

    /// An object's members in UTF-8 key order, whichever form holds it.
    public var memberList: [JSONMember]? {
        switch self {
        case let .object(o): return JSONValue.sortedKeys(o).map { JSONMember(key: $0, value: o[$0]!) }
        case let .members(m): return m
        default: return nil
        }
    }

    /// The string, if this is one.
    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    /// The object as a dictionary. For `.members` two keys that differ only in normalization
    /// become one (the first): callers that must see every key use `memberList`.
    public var objectValue: [String: JSONValue]? {
        if case let .object(o) = self { return o }
        if case let .members(m) = self { return Dictionary(m.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }) }
        return nil
    }
    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    /// The boolean, if this is one.
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    /// The number as a double, if this is a number.
    public var doubleValue: Double? { if case let .number(n) = self { return Double(n) }; return nil }
    /// The value as a non-negative integer, nil if it is not one (or does not fit).
    public var uint64Value: UInt64? {
        guard case let .number(n) = self else { return nil }
        return UInt64(n)
    }
    /// The number as a signed integer, nil if it is not one (or does not fit).
    public var int64Value: Int64? {
        guard case let .number(n) = self else { return nil }
        return Int64(n)
    }

    // MARK: Serialization

    /// Compact canonical form: object keys sorted by their UTF-8 bytes, no whitespace,
    /// only the escapes JSON requires. This is the form hashed for version ids.
    public func canonicalBytes() -> [UInt8] {
        var out = [UInt8]()
        write(into: &out, indent: nil, level: 0)
        return out
    }

    /// The canonical form as text.
    public func canonicalString() -> String { String(decoding: canonicalBytes(), as: UTF8.self) }

    /// Indented form for people and `--json` output; keys sorted the same way.
    public func prettyString() -> String {
        var out = [UInt8]()
        write(into: &out, indent: 2, level: 0)
        return String(decoding: out, as: UTF8.self)
    }

    static func sortedKeys(_ o: [String: JSONValue]) -> [String] {
        o.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    private func write(into out: inout [UInt8], indent: Int?, level: Int) {
        func newline(_ lvl: Int) {
            guard let indent else { return }
            out.append(0x0a)
            out.append(contentsOf: [UInt8](repeating: 0x20, count: indent * lvl))
        }
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case let .bool(b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case let .number(n): out.append(contentsOf: Array(n.utf8))
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .array(a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                v.write(into: &out, indent: indent, level: level + 1)
            }
            if !a.isEmpty { newline(level) }
            out.append(UInt8(ascii: "]"))
        case .object, .members:
            let members = memberList!
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                JSONValue.writeString(m.key, into: &out)
                out.append(UInt8(ascii: ":"))
                if indent != nil { out.append(0x20) }
                m.value.write(into: &out, indent: indent, level: level + 1)
            }
            if !members.isEmpty { newline(level) }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5c, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5c, 0x5c])
            case 0x08: out.append(contentsOf: [0x5c, UInt8(ascii: "b")])
            case 0x0c: out.append(contentsOf: [0x5c, UInt8(ascii: "f")])
            case 0x0a: out.append(contentsOf: [0x5c, UInt8(ascii: "n")])
            case 0x0d: out.append(contentsOf: [0x5c, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5c, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xf)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    // MARK: Parsing

    /// Why a document is not valid JSON, and where.
    public struct ParseError: Error, CustomStringConvertible {
        /// The byte offset the parser stopped at.
        public let offset: Int
        /// What was wrong there.
        public let message: String
        /// The one-line message.
        public var description: String { "invalid JSON at byte \(offset): \(message)" }
    }

    /// Parses one JSON document (surrounding whitespace allowed). Nesting is bounded so
    /// hostile input cannot exhaust the stack.
    /// With `maxValues`, a counting pass refuses a document of more values than that before any
    /// is built: a parsed value costs tens of bytes, so `{}` repeated costs 15 times its text.
    public static func parse<C: Collection>(_ bytes: C, maxDepth: Int = 64, maxValues: Int? = nil) throws -> JSONValue where C.Element == UInt8 {
        if let maxValues {
            let n = approximateValueCount(bytes)
            guard n <= maxValues else {
                throw ParseError(offset: 0, message: "about \(n) values, more than the \(maxValues) this document may hold")
            }
        }
        var p = Parser(bytes: Array(bytes), maxDepth: maxDepth)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.i == p.bytes.count else { throw ParseError(offset: p.i, message: "unexpected data after the document") }
        return v
    }

    /// Parses a document given as text.
    public static func parse(_ text: String) throws -> JSONValue { try parse(Array(text.utf8)) }

    /// The document in `bytes`, or nil when it is not well-formed JSON: for records where a
    /// malformed one simply loses (to a well-formed one, or to a fresh start).
    package static func parseIfWellFormed(_ bytes: [UInt8]) -> JSONValue? {
        do { return try parse(bytes) } catch { return nil }
    }

    /// The JSON document in the file at `path`, or nil when it is absent, unreadable or
    /// malformed: for files whose loss costs only a fresh start (daemon state, install
    /// history, a resumable upload's parts), never for anything a user stored.
    package static func readCacheDocument(_ path: String, limit: Int) -> JSONValue? {
        FileSystem.readCacheFile(path, limit: limit).flatMap(parseIfWellFormed)
    }

    /// An upper estimate of the values in a document without building any: separators and
    /// opening brackets outside strings (every value but the first follows a comma or opens a
    /// container), plus one. Strings are skipped with their escapes.
    public static func approximateValueCount<C: Collection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var count = 1
        var inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == 0x5c { escaped = true } else if b == 0x22 { inString = false }
            } else if b == 0x22 {
                inString = true
            } else if b == 0x2c || b == 0x7b || b == 0x5b {
                count += 1
            }
        }
        return count
    }

    /// The values a piece of remote metadata (a manifest, an entries file, a release) may hold:
    /// one per 16 bytes of its text and a few thousand more. Honest metadata spends 30 bytes or
    /// more a value (ids, versions, paths), so only a document built to inflate is refused, and
    /// what a parse of one can cost stays a small multiple of its bounded size.
    public static func remoteValueLimit(forBytes n: Int) -> Int { n / 16 + 4096 }

    private struct Parser {
        let bytes: [UInt8]
        let maxDepth: Int
        var i = 0

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        func fail(_ m: String) -> ParseError { ParseError(offset: i, message: m) }

        mutating func skipWhitespace() {
            while i < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            guard i < bytes.count else { throw fail("unexpected end of input") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), 0x30...0x39: return .number(try number())
            default: throw fail("unexpected character")
            }
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { throw fail("expected \(word)") }
            i += w.count
        }

        mutating func object(depth: Int) throws -> JSONValue {
            i += 1
            var result = JSONObjectBuilder()
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return result.value }
            while true {
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipWhitespace()
                guard !result.contains(key) else { throw fail("duplicate key \"\(key)\"") }
                result.add(key, try value(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input in object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return result.value }
                throw fail("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws -> JSONValue {
            i += 1
            var result: [JSONValue] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(result) }
            while true {
                skipWhitespace()
                result.append(try value(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input in array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(result) }
                throw fail("expected ',' or ']'")
            }
        }

        mutating func number() throws -> String {
            let start = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, (0x30...0x39).contains(bytes[i]) else { throw fail("bad number") }
            if bytes[i] == 0x30 { i += 1 } else { while i < bytes.count, (0x30...0x39).contains(bytes[i]) { i += 1 } }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard i < bytes.count, (0x30...0x39).contains(bytes[i]) else { throw fail("bad number") }
                while i < bytes.count, (0x30...0x39).contains(bytes[i]) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard i < bytes.count, (0x30...0x39).contains(bytes[i]) else { throw fail("bad number") }
                while i < bytes.count, (0x30...0x39).contains(bytes[i]) { i += 1 }
            }
            guard i - start <= 64 else { throw fail("number literal too long") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func string() throws -> String {
            i += 1
            var out = [UInt8]()
            while true {
                guard i < bytes.count else { throw fail("unterminated string") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("control character in string") }
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5c)
                case UInt8(ascii: "/"): out.append(0x2f)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == 0x5c, bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("bad \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("bad escape")
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
            return s
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                default: throw fail("bad \\u escape")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }
    }
}

/// One member of a `.members` object.
public struct JSONMember: Equatable, Sendable {
    /// The member's key.
    public var key: String
    /// The member's value.
    public var value: JSONValue

    /// A member from its parts.
    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

/// Builds an object with keys told apart by their UTF-8 bytes: `.object` when no two keys
/// collide under Swift's String equality, `.members` when some do.
public struct JSONObjectBuilder: Sendable {
    private var dictionary: [String: JSONValue] = [:]
    private var members: [JSONMember] = []
    private var keys = Set<[UInt8]>()
    private var merged = false

    /// An empty object.
    public init() {}

    /// Whether this exact key (its bytes) is already there.
    public func contains(_ key: String) -> Bool { keys.contains(Array(key.utf8)) }

    /// Adds a member whose key is not there yet (check `contains` first).
    public mutating func add(_ key: String, _ value: JSONValue) {
        keys.insert(Array(key.utf8))
        if dictionary[key] != nil { merged = true } else { dictionary[key] = value }
        members.append(JSONMember(key: key, value: value))
    }

    /// The object built so far: `.object`, or `.members` when two keys collide under String
    /// equality.
    public var value: JSONValue {
        guard merged else { return .object(dictionary) }
        return .members(members.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) })
    }
}
