// The user's defaults: a small JSON file naming a default store and options each command
// starts from, so a device or a CI job does not repeat them on every line.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

/// `$SLMSTORE_CONFIG`, else `$XDG_CONFIG_HOME/slmstore/config.json`, else
/// `~/.config/slmstore/config.json`:
///
///     {"store": "/srv/slm", "defaults": {"*": ["--no-progress"], "pull": ["--max-rate", "20M"]}}
///
/// `defaults["*"]` are global options for every command; `defaults[COMMAND]` go before what is
/// typed, so a typed value wins (a repeatable option such as --trust adds to them).
struct UserConfig {
    var store: String?
    var defaults: [String: [String]] = [:]

    static var path: String {
        if let p = getenv("SLMSTORE_CONFIG"), p.pointee != 0 { return String(cString: p) }
        if let xdg = getenv("XDG_CONFIG_HOME"), xdg.pointee != 0 { return String(cString: xdg) + "/slmstore/config.json" }
        return (getenv("HOME").map { String(cString: $0) } ?? ".") + "/.config/slmstore/config.json"
    }

    /// The file's settings; none when there is no file. A file that is there but wrong is an
    /// error naming it, never silently ignored.
    static func load() throws -> UserConfig {
        let path = Self.path
        guard FileSystem.exists(path) else { return UserConfig() }
        func bad(_ problem: String) -> SLMError { .input(path: path, problem: problem) }
        let value: JSONValue
        do {
            value = try JSONValue.parse(try FileSystem.readFile(path, limit: 1 << 20))
        } catch {
            throw bad("is not valid JSON (\(error))")
        }
        guard case .object(let top) = value else { throw bad("must be a JSON object with \"store\" and \"defaults\"") }
        var config = UserConfig()
        for (key, v) in top {
            switch key {
            case "store":
                guard let s = v.stringValue, !s.isEmpty else { throw bad("\"store\" must be a directory path") }
                config.store = s
            case "defaults":
                guard case .object(let commands) = v else { throw bad("\"defaults\" must map command names to lists of options") }
                for (command, list) in commands {
                    guard let items = list.arrayValue?.compactMap(\.stringValue), items.count == list.arrayValue?.count else {
                        throw bad("\"defaults\".\"\(command)\" must be a list of strings")
                    }
                    config.defaults[command] = items
                }
            default:
                throw bad("unknown key \"\(key)\" (known: store, defaults)")
            }
        }
        return config
    }
}
