// The block-style YAML subset model cards use: nested maps, lists, plain and quoted scalars,
// literal (|) and folded (>) blocks, comments. Anything else (anchors, aliases, tags, flow
// collections, several documents, tabs in indentation) is refused with its line and column.

/// The YAML subset model cards are written in, read into JSON values.
public enum YAMLSubset {
    /// Where and why a card is not in the subset.
    public struct ParseError: Error, CustomStringConvertible {
        /// The line, from 1.
        public let line: Int
        /// The column, from 1.
        public let column: Int
        /// What is wrong there.
        public let message: String
        /// "line L, column C: message".
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    private struct Line {
        let number: Int       // 1-based
        let indent: Int
        let text: String      // content after the indent, comment stripped, trailing spaces trimmed
        let raw: String
    }

    /// Parses one document of the subset; anything outside it is a `ParseError` naming its line and
    /// column.
    public static func parse(_ source: String) throws -> JSONValue {
        var lines: [Line] = []
        var sawDocumentStart = false
        var sawContent = false
        for (i, rawSub) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var raw = String(rawSub)
            if raw.hasSuffix("\r") { raw.removeLast() }
            let n = i + 1
            var indent = 0
            for c in raw {
                if c == " " { indent += 1 } else if c == "\t" {
                    throw ParseError(line: n, column: indent + 1, message: "tab in indentation (use spaces)")
                } else { break }
            }
            let body = String(raw.dropFirst(indent))
            let text = try stripComment(body, line: n, column: indent + 1)
            if text.isEmpty { lines.append(Line(number: n, indent: indent, text: "", raw: raw)); continue }
            if indent == 0 && (text == "---" || text.hasPrefix("--- ")) {
                if sawContent || sawDocumentStart { throw ParseError(line: n, column: 1, message: "multiple documents are not supported") }
                sawDocumentStart = true
                continue
            }
            if indent == 0 && text == "..." { throw ParseError(line: n, column: 1, message: "document end markers are not supported") }
            if text.hasPrefix("%") { throw ParseError(line: n, column: indent + 1, message: "directives are not supported") }
            sawContent = true
            lines.append(Line(number: n, indent: indent, text: text, raw: raw))
        }
        var p = Parser(lines: lines)
        p.skipBlank()
        guard p.i < p.lines.count else { return .object([:]) }
        let v = try p.block(indent: p.lines[p.i].indent)
        p.skipBlank()
        if p.i < p.lines.count {
            let l = p.lines[p.i]
            throw ParseError(line: l.number, column: l.indent + 1, message: "unexpected indentation")
        }
        return v
    }

    /// Removes a `#` comment that is outside quotes and preceded by a space (or starts the line).
    static func stripComment(_ s: String, line: Int, column: Int) throws -> String {
        var inSingle = false, inDouble = false
        var prev: Character = " "
        var out = ""
        var escaped = false
        for c in s {
            if inDouble {
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inDouble = false }
            } else if inSingle {
                if c == "'" { inSingle = false }
            } else if c == "#" && (prev == " " || out.isEmpty) {
                break
            } else if c == "\"" && (out.isEmpty || prev == " " || prev == ":" || prev == "-") {
                inDouble = true
            } else if c == "'" && (out.isEmpty || prev == " " || prev == ":" || prev == "-") {
                inSingle = true
            }
            out.append(c)
            prev = c
        }
        while out.last == " " { out.removeLast() }
        return out
    }

    private struct Parser {
        let lines: [Line]
        var i = 0

        init(lines: [Line]) { self.lines = lines }

        mutating func skipBlank() { while i < lines.count && lines[i].text.isEmpty { i += 1 } }

        func fail(_ l: Line, _ col: Int, _ m: String) -> ParseError { ParseError(line: l.number, column: col, message: m) }

        mutating func block(indent: Int) throws -> JSONValue {
            skipBlank()
            let first = lines[i]
            return first.text == "-" || first.text.hasPrefix("- ") ? try list(indent: indent) : try map(indent: indent)
        }

        mutating func map(indent: Int) throws -> JSONValue {
            // Keys are told apart by their bytes: "é" and "e" + U+0301 are two keys.
            var out = JSONObjectBuilder()
            while true {
                skipBlank()
                guard i < lines.count, lines[i].indent == indent else { break }
                let l = lines[i]
                if l.text == "-" || l.text.hasPrefix("- ") { throw fail(l, indent + 1, "list item where a key was expected") }
                let (key, rest) = try splitKey(l, l.text, column: indent + 1)
                guard !out.contains(key) else { throw fail(l, indent + 1, "duplicate key \"\(key)\"") }
                i += 1
                out.add(key, try value(after: rest, line: l, parentIndent: indent, column: indent + key.count + 3))
            }
            if i < lines.count, lines[i].indent > indent {
                throw fail(lines[i], lines[i].indent + 1, "unexpected indentation")
            }
            return out.value
        }

        mutating func list(indent: Int) throws -> JSONValue {
            var out: [JSONValue] = []
            while true {
                skipBlank()
                guard i < lines.count, lines[i].indent == indent, lines[i].text == "-" || lines[i].text.hasPrefix("- ") else { break }
                let l = lines[i]
                let rest = l.text == "-" ? "" : String(l.text.dropFirst(2)).trimmingLeadingSpaces()
                let itemIndent = indent + (l.text.count - rest.count)
                if rest.isEmpty {
                    i += 1
                    skipBlank()
                    guard i < lines.count, lines[i].indent > indent else { out.append(.null); continue }
                    out.append(try block(indent: lines[i].indent))
                } else if isKeyLine(rest) {
                    // "- key: value" starts a map whose keys sit at the item's column.
                    let (key, after) = try splitKey(l, rest, column: itemIndent + 1)
                    i += 1
                    var obj = JSONObjectBuilder()
                    obj.add(key, try value(after: after, line: l, parentIndent: itemIndent, column: itemIndent + key.count + 3))
                    skipBlank()
                    if i < lines.count, lines[i].indent == itemIndent {
                        guard let more = try map(indent: itemIndent).memberList else { break }
                        for m in more {
                            guard !obj.contains(m.key) else { throw fail(l, itemIndent + 1, "duplicate key \"\(m.key)\"") }
                            obj.add(m.key, m.value)
                        }
                    }
                    out.append(obj.value)
                } else {
                    i += 1
                    out.append(try scalar(rest, line: l, column: itemIndent + 1))
                }
            }
            if i < lines.count, lines[i].indent > indent {
                throw fail(lines[i], lines[i].indent + 1, "unexpected indentation")
            }
            return .array(out)
        }

        /// The value after "key:" — inline scalar, block scalar, or a nested block below.
        mutating func value(after rest: String, line l: Line, parentIndent: Int, column: Int) throws -> JSONValue {
            if rest.isEmpty {
                skipBlank()
                guard i < lines.count, lines[i].indent > parentIndent || (lines[i].indent == parentIndent && lines[i].text.hasPrefix("- ")) else {
                    return .null
                }
                return try block(indent: lines[i].indent)
            }
            if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" || rest == "|+" || rest == ">+" {
                return .string(blockScalar(style: rest, parentIndent: parentIndent))
            }
            return try scalar(rest, line: l, column: column)
        }

        mutating func blockScalar(style: String, parentIndent: Int) -> String {
            var collected: [String] = []
            var blockIndent: Int? = nil
            while i < lines.count {
                let l = lines[i]
                let content = l.raw
                let leading = content.prefix { $0 == " " }.count
                if content.trimmingLeadingSpaces().isEmpty { collected.append(""); i += 1; continue }
                if leading <= parentIndent { break }
                if blockIndent == nil { blockIndent = leading }
                if leading < blockIndent! { break }
                collected.append(String(content.dropFirst(blockIndent!)))
                i += 1
            }
            var trailingBlank = 0
            while collected.last == "" { collected.removeLast(); trailingBlank += 1 }
            var text: String
            if style.hasPrefix("|") {
                text = collected.joined(separator: "\n")
            } else {
                text = ""
                for (k, line) in collected.enumerated() {
                    if k > 0 { text += line.isEmpty || collected[k - 1].isEmpty ? "\n" : " " }
                    text += line
                }
            }
            if style.hasSuffix("-") { return text }
            if style.hasSuffix("+") { return text + String(repeating: "\n", count: trailingBlank + 1) }
            return collected.isEmpty ? "" : text + "\n"
        }

        func isKeyLine(_ s: String) -> Bool {
            if s.hasPrefix("\"") || s.hasPrefix("'") {
                guard let close = s.dropFirst().firstIndex(of: s.first!) else { return false }
                let after = s[s.index(after: close)...]
                return after.hasPrefix(":") && (after.count == 1 || after.dropFirst().hasPrefix(" "))
            }
            guard let colon = s.range(of: ": ") ?? (s.hasSuffix(":") ? s.range(of: ":", options: .backwards) : nil) else { return false }
            return !s[..<colon.lowerBound].isEmpty
        }

        func splitKey(_ l: Line, _ s: String, column: Int) throws -> (String, String) {
            var key: String
            var rest: Substring
            if s.hasPrefix("\"") || s.hasPrefix("'") {
                guard let close = s.dropFirst().firstIndex(of: s.first!) else { throw fail(l, column, "unterminated quoted key") }
                key = String(s[s.index(after: s.startIndex)..<close])
                rest = s[s.index(after: close)...]
                guard rest.hasPrefix(":") else { throw fail(l, column, "expected ':' after the key") }
                rest = rest.dropFirst()
            } else {
                guard let colon = s.range(of: ": ") ?? (s.hasSuffix(":") ? s.range(of: ":", options: .backwards) : nil) else {
                    throw fail(l, column, "expected \"key: value\"")
                }
                key = String(s[..<colon.lowerBound])
                rest = s[colon.lowerBound...].dropFirst()
                if key.hasPrefix("? ") || key == "?" { throw fail(l, column, "complex keys are not supported") }
                if key.hasPrefix("&") || key.hasPrefix("*") || key.hasPrefix("!") { throw fail(l, column, "anchors, aliases and tags are not supported") }
                if key.hasPrefix("[") || key.hasPrefix("{") { throw fail(l, column, "flow collections are not supported") }
            }
            guard !key.isEmpty else { throw fail(l, column, "empty key") }
            return (key, String(rest).trimmingLeadingSpaces())
        }

        func scalar(_ s: String, line l: Line, column: Int) throws -> JSONValue {
            guard let first = s.first else { return .null }
            switch first {
            case "&", "*": throw fail(l, column, "anchors and aliases are not supported")
            case "!": throw fail(l, column, "tags are not supported")
            case "[", "{": throw fail(l, column, "flow collections are not supported (use block style)")
            case "|", ">": throw fail(l, column, "block scalar indicator must end the line")
            case "@", "`": throw fail(l, column, "reserved indicator '\(first)' cannot start a plain scalar")
            case "\"":
                return .string(try doubleQuoted(s, line: l, column: column))
            case "'":
                guard s.count >= 2, s.hasSuffix("'") else { throw fail(l, column, "unterminated single-quoted string") }
                let inner = String(s.dropFirst().dropLast())
                if inner.replacingOccurrences(of: "''", with: "").contains("'") { throw fail(l, column, "stray quote in single-quoted string") }
                return .string(inner.replacingOccurrences(of: "''", with: "'"))
            default:
                if s.contains(": ") { throw fail(l, column, "unexpected ': ' in a plain value (quote it)") }
                return plain(s)
            }
        }

        func doubleQuoted(_ s: String, line l: Line, column: Int) throws -> String {
            var out = ""
            var it = s.dropFirst().makeIterator()
            var closed = false
            while let c = it.next() {
                if c == "\"" { closed = true; break }
                if c != "\\" { out.append(c); continue }
                guard let e = it.next() else { break }
                switch e {
                case "n": out += "\n"
                case "t": out += "\t"
                case "r": out += "\r"
                case "0": out += "\0"
                case "\"": out += "\""
                case "\\": out += "\\"
                case "/": out += "/"
                case "u":
                    var hex = ""
                    for _ in 0..<4 { if let h = it.next() { hex.append(h) } }
                    guard let v = UInt32(hex, radix: 16), let u = Unicode.Scalar(v) else { throw fail(l, column, "bad \\u escape") }
                    out.unicodeScalars.append(u)
                default: throw fail(l, column, "unsupported escape \\\(e)")
                }
            }
            guard closed else { throw fail(l, column, "unterminated double-quoted string") }
            var rest = ""
            while let c = it.next() { rest.append(c) }
            guard rest.trimmingLeadingSpaces().isEmpty else { throw fail(l, column, "text after a closing quote") }
            return out
        }

        /// One rule (Format.md §7.2): null and booleans by their YAML 1.2 core spellings, a number
        /// exactly when the text is a JSON number (kept as the user wrote it), else a string. So
        /// `.5`, `+12`, `0x1F`, `1_000`, `.inf` and `yes` stay strings: nothing is converted.
        func plain(_ s: String) -> JSONValue {
            switch s {
            case "~", "null", "Null", "NULL": return .null
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            if s.range(of: #"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"#, options: .regularExpression) != nil {
                return .number(s)
            }
            return .string(s)
        }
    }
}

extension String {
    func trimmingLeadingSpaces() -> String { String(drop { $0 == " " }) }
}

import SLMFormats
import Foundation
