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
        s += "\nGlobal options:\n  --store DIR     store to use (default: $SLMSTORE_DIR, else $XDG_DATA_HOME/slmstore or ~/.local/share/slmstore)\n  --no-progress   no progress bar, even on a terminal\n  -q, --quiet     no progress, no notes, no summary of what was done (listings, JSON, warnings and errors stay)\n  -v, --verbose   also say each step worth knowing (every retry of a request)\n  -h, --help      show this help\n"
        return s
    }
}

struct Context {
    /// Store directory from --store, if given.
    var explicitStore: String?
    /// The user config's "store", below --store and $SLMSTORE_DIR.
    var configuredStore: String?

    var storePath: String {
        if let s = explicitStore { return s }
        if let env = getenv("SLMSTORE_DIR"), env.pointee != 0 { return String(cString: env) }
        if let s = configuredStore { return s }
        if let xdg = getenv("XDG_DATA_HOME"), xdg.pointee != 0 { return String(cString: xdg) + "/slmstore" }
        let home = getenv("HOME").map { String(cString: $0) } ?? "."
        return home + "/.local/share/slmstore"
    }

    var isDefaultLocation: Bool { explicitStore == nil && getenv("SLMSTORE_DIR") == nil && configuredStore == nil }

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

/// What Ctrl-C says for a command that does not stop between steps itself (pull and sync
/// do): one line on what is safe and how to go on, then exit 130, as a shell expects. Every
/// write goes through a temporary file and a rename, so what is in place is whole.
enum InterruptLine {
    nonisolated(unsafe) private static var line: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) private static var length = 0

    static func message(for command: String) -> String {
        switch command {
        case "add": return "interrupted: nothing was added (a version appears only once all of it is stored); run the same command again"
        case "push": return "interrupted: packs already uploaded stay on the remote and are not sent again; run the same command again to finish"
        case "checkout": return "interrupted: the directory may hold part of the version; run the same command again with --force"
        case "gc", "maintenance": return "interrupted: a pack is removed only after its rewrite is in place, so nothing was lost; run it again to finish"
        case "verify": return "interrupted: verify changes nothing until it repairs; run it again"
        default: return "interrupted: what slmstore wrote is whole (every write is a rename); run the same command again"
        }
    }

    /// Installs the handler for `command` (a command that catches signals itself replaces it).
    static func install(for command: String) {
        // A progress bar may be on the line: on a terminal the line is cleared first.
        let text = (isatty(2) != 0 ? "\r\u{1b}[K" : "") + "slmstore: error: \(message(for: command))\n"
        let bytes = Array(text.utf8CString)
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        buffer.initialize(from: bytes, count: bytes.count)
        line = buffer
        length = bytes.count - 1
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { _ in
                // Only async-signal-safe calls: write(2) and _exit(2).
                if let line = InterruptLine.line { _ = write(2, line, InterruptLine.length) }
                _exit(130)
            }
        }
    }
}

/// Remote options as every command starts them: with `--verbose`, each retry is said.
func cliRemoteOptions() -> Remotes.Options {
    var o = Remotes.Options()
    o.onRetry = { attempt, error in Output.detail("attempt \(attempt) failed, retrying: \(error.description)") }
    return o
}

func requirePositionals(_ a: ParsedArguments, _ command: String, min: Int, max: Int, usage: String) throws {
    guard a.positionals.count >= min else { throw SLMError.argument("\(command): missing arguments (usage: \(usage))") }
    guard a.positionals.count <= max else {
        throw SLMError.argument("\(command): unexpected argument \"\(a.positionals[max])\" (usage: \(usage))")
    }
}
