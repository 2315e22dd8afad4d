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
                throw SLMError.argument("\(command): unknown option \(name) (see `slmstore \(command) --help`)")
            }
        }
        return out
    }
}
