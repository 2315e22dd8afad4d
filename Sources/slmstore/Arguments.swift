// Command-line parsing: global options (--store, --json, --help) anywhere, then each command's
// own options and positionals. Unknown options are errors, not silently ignored.

import SLMStoreKit

struct OptionSpec {
    var values: Set<String> = []      // options that take a value: --to DIR or --to=DIR
    var repeatable: Set<String> = []  // value options that may be given more than once
    var flags: Set<String> = []
}

struct ParsedArguments {
    var positionals: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []

    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }
    func has(_ name: String) -> Bool { flags.contains(name) }
}

/// "Did you mean": the known word nearest to what was typed, when it is near enough to be the
/// typo it looks like (git's rule of thumb: at most a third of the word, and at most 3 edits).
enum Suggestion {
    static func closest(to typed: String, among known: [String]) -> String? {
        let scored = known.map { ($0, distance(Array(typed), Array($0))) }.filter { $0.1 <= min(3, max(1, typed.count / 3)) }
        return scored.min { ($0.1, $0.0) < ($1.1, $1.0) }?.0
    }

    /// Levenshtein distance, with a swap of two neighbours counting as one edit.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }
}

enum ArgumentParser {
    static func parse(_ args: [String], spec: OptionSpec, command: String) throws -> ParsedArguments {
        var out = ParsedArguments()
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let a = args[i]
            i += 1
            if onlyPositionals || !a.hasPrefix("-") || a == "-" {
                out.positionals.append(a)
                continue
            }
            if a == "--" { onlyPositionals = true; continue }
            var name = a
            var inline: String? = nil
            if let eq = a.firstIndex(of: "="), a.hasPrefix("--") {
                name = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            }
            if name == "-h" { name = "--help" }
            if spec.values.contains(name) {
                let v: String
                if let inline { v = inline } else {
                    guard i < args.count else { throw SLMError.argument("\(command): option \(name) needs a value") }
                    v = args[i]
                    i += 1
                }
                if out.values[name] != nil && !spec.repeatable.contains(name) {
                    throw SLMError.argument("\(command): option \(name) given more than once")
                }
                out.values[name, default: []].append(v)
            } else if spec.flags.contains(name) {
                guard inline == nil else { throw SLMError.argument("\(command): option \(name) takes no value") }
                out.flags.insert(name)
            } else {
                let known = spec.values.union(spec.flags)
                let guess = Suggestion.closest(to: name, among: Array(known)).map { "did you mean \($0)? " } ?? ""
                throw SLMError.argument("\(command): unknown option \(name) (\(guess)see `slmstore \(command) --help`)")
            }
        }
        return out
    }
}
