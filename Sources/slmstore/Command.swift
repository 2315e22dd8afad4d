// The command table and what every command gets: parsed arguments and the store location.

import SLMStoreKit
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

struct Command {
    var name: String
    var summary: String
    var usage: String
    var details: String
    var spec: OptionSpec
    var run: (ParsedArguments, Context) throws -> Int32

    var help: String {
        var s = "usage: \(usage)\n\n\(summary)\n"
        if !details.isEmpty { s += "\n\(details)\n" }
        s += "\nGlobal options:\n  --store DIR     store to use (default: $SLMSTORE_DIR, else $XDG_DATA_HOME/slmstore or ~/.local/share/slmstore)\n  --no-progress   no progress bar, even on a terminal\n  -h, --help      show this help\n"
        return s
    }
}

struct Context {
    /// Store directory from --store, if given.
    var explicitStore: String?

    var storePath: String {
        if let s = explicitStore { return s }
        if let env = getenv("SLMSTORE_DIR"), env.pointee != 0 { return String(cString: env) }
        if let xdg = getenv("XDG_DATA_HOME"), xdg.pointee != 0 { return String(cString: xdg) + "/slmstore" }
        let home = getenv("HOME").map { String(cString: $0) } ?? "."
        return home + "/.local/share/slmstore"
    }

    var isDefaultLocation: Bool { explicitStore == nil && getenv("SLMSTORE_DIR") == nil }

    /// Opens the store; creates it when `create` is set or the default location is used.
    func openStore(create: Bool = false) throws -> Store {
        let path = storePath
        if create || (isDefaultLocation && !FileSystem.exists(path + "/config")) {
            return try Store.create(at: path)
        }
        return try Store.open(at: path)
    }
}

/// SIGINT and SIGTERM turned into a flag a long command polls, so it stops between writes and
/// says what it kept instead of dying mid-line.
enum Interrupt {
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static func catchSignals() -> StopFlag {
        let flag = StopFlag()
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { flag.set() }
            s.resume()
            sources.append(s)
        }
        return flag
    }
}

func requirePositionals(_ a: ParsedArguments, _ command: String, min: Int, max: Int, usage: String) throws {
    guard a.positionals.count >= min else { throw SLMError.argument("\(command): missing arguments (usage: \(usage))") }
    guard a.positionals.count <= max else {
        throw SLMError.argument("\(command): unexpected argument \"\(a.positionals[max])\" (usage: \(usage))")
    }
}
