// `remote`: named remotes with their settings (trusted keys, CA, client certificate, token file,
// endpoint), kept in the store's remotes.json, so later commands take NAME instead of repeating
// the URL and its flags.

import Foundation
import SLMStoreKit

/// One named remote: where it is and the settings a command uses with it unless told otherwise.
struct NamedRemote {
    var url: String
    /// Option name ("--trust", "--cacert", ...) to its values.
    var settings: [String: [String]]
}

/// The store's named remotes (`remotes.json`, canonical JSON + "\n", local only).
enum NamedRemotes {
    static let fileName = "remotes.json"
    /// The settings a named remote may carry, as the options they stand for.
    static let settingOptions = ["--trust", "--cacert", "--cert", "--key", "--token-file", "--netrc-file", "--endpoint"]

    static func load(_ store: String) throws -> [String: NamedRemote] {
        let path = "\(store)/\(fileName)"
        guard FileSystem.exists(path) else { return [:] }
        let v: JSONValue
        do { v = try JSONValue.parse(try FileSystem.readFile(path, limit: 1 << 20)) } catch {
            throw SLMError.damaged(path: path, problem: "named remotes: not valid JSON").caused(by: error)
        }
        guard v["format"]?.uint64Value == 1, let list = v["remotes"]?.objectValue else {
            throw SLMError.damaged(path: path, problem: "named remotes: needs format 1 and remotes")
        }
        var out: [String: NamedRemote] = [:]
        for (name, r) in list {
            guard let url = r["url"]?.stringValue else { throw SLMError.damaged(path: path, problem: "named remote \(name) has no url") }
            var settings: [String: [String]] = [:]
            for o in settingOptions { if let values = r[String(o.dropFirst(2))]?.arrayValue?.compactMap(\.stringValue) { settings[o] = values } }
            out[name] = NamedRemote(url: url, settings: settings)
        }
        return out
    }

    static func save(_ remotes: [String: NamedRemote], store: String) throws {
        let o: JSONValue = .object(["format": .int(1), "remotes": .object(remotes.mapValues { r in
            var m: [String: JSONValue] = ["url": .string(r.url)]
            for (k, v) in r.settings { m[String(k.dropFirst(2))] = .array(v.map { .string($0) }) }
            return .object(m)
        })])
        try FileSystem.makeDirectories(store)
        try FileSystem.writeAtomically(o.canonicalBytes() + [0x0a], to: "\(store)/\(fileName)")
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
            && !name.hasPrefix(".") && !name.contains("://")
    }

    /// Commands taking a REMOTE argument, and its position among their positionals.
    static let remotePosition: [String: Int] = ["pull": 0, "push": 0, "fleet": 0, "resign": 0, "device": 1, "verify": 0]

    /// `a` with a named remote at the command's REMOTE position replaced by its URL, and the
    /// remote's settings added where the command line gives none of that option.
    static func apply(_ a: ParsedArguments, command: Command, store: String) throws -> ParsedArguments {
        guard let position = remotePosition[command.name], a.positionals.count > position else { return a }
        let text = a.positionals[position]
        guard isValidName(text), !FileSystem.exists(text), let remote = try load(store)[text] else { return a }
        var out = a
        out.positionals[position] = remote.url
        for (option, values) in remote.settings where command.spec.values.contains(option) && out.values[option] == nil {
            out.values[option] = values
        }
        return out
    }
}

let remoteCommand = Command(
    name: "remote", summary: "Name remotes, with their keys, CA and credentials, so commands take NAME",
    usage: "slmstore remote add NAME URL [--trust PUB]... [--cacert F] [--cert F --key F] [--token-file F] [--netrc-file F] [--endpoint URL] | remote remove NAME | remote list [--json]",
    details: """
    Named remotes live in the store (remotes.json). Wherever a command takes REMOTE (push, pull,
    fleet, resign, device, verify --repair), NAME stands for its URL, and the settings given here
    are used unless the command line gives that option itself. A directory of the same name in
    the current directory wins over a named remote.
      add NAME URL    name a remote (a directory, http(s)://, s3://); replaces a NAME already there
      remove NAME     forget it
      list            the named remotes and their settings
      --json          list: remotes {NAME: {url, trust, cacert, ...}}
    """,
    spec: OptionSpec(values: Set(NamedRemotes.settingOptions), repeatable: ["--trust"], flags: ["--json"])
) { a, ctx in
    guard let sub = a.positionals.first else { throw SLMError.argument("remote: missing subcommand (add, remove or list)") }
    let store = try ctx.openStore(create: true).root
    var remotes = try NamedRemotes.load(store)
    switch sub {
    case "add":
        try requirePositionals(a, "remote add", min: 3, max: 3, usage: "slmstore remote add NAME URL")
        let (name, url) = (a.positionals[1], a.positionals[2])
        guard NamedRemotes.isValidName(name) else { throw SLMError.argument("remote add: \"\(name)\" is not a remote name (letters, digits, - _ ., up to 64)") }
        if let fixed = Remotes.misspelledURLHint(url) { throw SLMError.argument("remote add: \"\(url)\" is not a valid remote URL; did you mean \(fixed)?") }
        var settings: [String: [String]] = [:]
        for o in NamedRemotes.settingOptions { let v = a.all(o); if !v.isEmpty { settings[o] = v } }
        for path in (settings["--trust"] ?? []) + ["--cacert", "--cert", "--key", "--token-file", "--netrc-file"].compactMap({ settings[$0]?.first }) {
            guard FileSystem.exists(path) else { throw SLMError.input(path: path, problem: "no such file") }
        }
        remotes[name] = NamedRemote(url: url, settings: settings)
        try NamedRemotes.save(remotes, store: store)
        print("remote \(name) -> \(HTTPCredentials.redact(url))")
    case "remove":
        try requirePositionals(a, "remote remove", min: 2, max: 2, usage: "slmstore remote remove NAME")
        guard remotes.removeValue(forKey: a.positionals[1]) != nil else { throw SLMError.notFound("remote remove: no remote named \(a.positionals[1])") }
        try NamedRemotes.save(remotes, store: store)
    case "list":
        if a.has("--json") {
            Output.json(.object(["remotes": .object(remotes.mapValues { r in
                var m: [String: JSONValue] = ["url": .string(HTTPCredentials.redact(r.url))]
                for (k, v) in r.settings { m[String(k.dropFirst(2))] = .array(v.map { .string($0) }) }
                return .object(m)
            })]))
        } else {
            for (name, r) in remotes.sorted(by: { $0.key < $1.key }) {
                let extra = r.settings.sorted { $0.key < $1.key }.flatMap { k, v in v.map { "\(k) \($0)" } }.joined(separator: " ")
                print("\(name)\t\(HTTPCredentials.redact(r.url))\(extra.isEmpty ? "" : "\t" + extra)")
            }
        }
    default:
        throw SLMError.argument("remote: unknown subcommand \"\(sub)\" (add, remove or list)")
    }
    return 0
}
