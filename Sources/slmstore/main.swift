// Entry point of the `slmstore` command: global options, dispatch, and error reporting.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

let commands: [Command] = storeCommands + deliveryCommands + registryCommands + syncCommands + trustCommands + [deviceCommand, remoteCommand, completionCommand, manCommand, demoCommand]

/// Commands whose standard output is what the user asked for (a listing, a file, a report):
/// `--quiet` keeps it. The others print a summary of what they did, which `--quiet` drops.
let dataCommands: Set<String> = ["ls", "show", "log", "cat", "verify", "diff", "history", "resolve", "status", "fleet",
                                 "completion", "man", "policy", "card-keys", "metrics"]

func topLevelHelp() -> String {
    var s = "slmstore \(SLMStoreVersion.current): a content-addressed store for model weights\n\nusage: slmstore [--store DIR] COMMAND [ARGS...]\n\nCommands:\n"
    let width = commands.map(\.name.count).max() ?? 0
    for c in commands { s += "  \(c.name)\(String(repeating: " ", count: width - c.name.count))  \(c.summary)\n" }
    s += "\nRun `slmstore COMMAND --help` for a command's options.\n"
    return s
}

func runMain() -> Int32 {
    var args = Array(CommandLine.arguments.dropFirst())
    var context = Context()
    let userConfig: UserConfig
    do { userConfig = try UserConfig.load() } catch let e as SLMError {
        Output.error(message(for: e))
        return 2
    } catch {
        Output.error("\(error)")
        return 2
    }
    context.configuredStore = userConfig.store
    // The user's global defaults go first: what is typed comes after them and wins.
    args = (userConfig.defaults["*"] ?? []) + args
    // --store may stand before or after the command name.
    var i = 0
    while i < args.count {
        if args[i] == "--" { break }
        if args[i] == "--store" {
            guard i + 1 < args.count else { Output.error("option --store needs a directory"); return 2 }
            context.explicitStore = args[i + 1]
            args.removeSubrange(i...i + 1)
            continue
        }
        if args[i].hasPrefix("--store=") {
            context.explicitStore = String(args[i].dropFirst("--store=".count))
            args.remove(at: i)
            continue
        }
        if args[i] == "--no-progress" {
            ProgressBar.suppressed = true
            args.remove(at: i)
            continue
        }
        if args[i] == "--quiet" || args[i] == "-q" {
            Output.verbosity = .quiet
            ProgressBar.suppressed = true
            args.remove(at: i)
            continue
        }
        if args[i] == "--verbose" || args[i] == "-v" {
            Output.verbosity = .verbose
            args.remove(at: i)
            continue
        }
        i += 1
    }
    guard let first = args.first else { print(topLevelHelp()); return 2 }
    if first == "--help" || first == "-h" || first == "help" {
        if first == "help", args.count > 1, let c = commands.first(where: { $0.name == args[1] }) { print(c.help); return 0 }
        print(topLevelHelp())
        return 0
    }
    if first == "--version" {
        print("slmstore \(SLMStoreVersion.current) (store format \(StoreConfig.currentFormat), manifest format \(Manifest.currentFormat), commit \(sourceCommit()))")
        return 0
    }
    // Blocks of 8 MiB and more (the 16 MiB read blocks) are mapped and unmapped, never left in
    // the heap: glibc's moving threshold would otherwise keep freed read blocks resident, one
    // set per file, and memory would grow with the number of files. (4 MiB pack batches and
    // per-chunk buffers stay below it: the heap reuses them without a system call.)
    // The device-side commands run beside the model: one malloc arena and a 256 KiB threshold
    // keep their peak low.
    if first == "pull" || first == "sync" {
        HeapRelease.limitArenas(1)
        HeapRelease.fixMmapThreshold(256 << 10)
    } else if first == "push" || first == "gc" {
        // Push (and gc's rewrite) copies records into a new 4 MiB batch after batch, pack after
        // pack, between small allocations that pin the heap: from the heap, the freed batches
        // were not reused, and a 16 GiB push peaked at 229 MiB (57 MiB mapped, in the same time).
        HeapRelease.fixMmapThreshold(1 << 20)
    } else {
        HeapRelease.fixMmapThreshold(8 << 20)
    }
    guard let command = commands.first(where: { $0.name == first }) else {
        let guess = Suggestion.closest(to: first, among: commands.map(\.name)).map { "did you mean `slmstore \($0)`? " } ?? ""
        Output.error("unknown command \"\(first)\" (\(guess)run `slmstore --help` for the list)")
        return 2
    }
    if let defaults = userConfig.defaults[command.name] { args.insert(contentsOf: defaults, at: 1) }
    if Output.verbosity == .quiet && !dataCommands.contains(command.name) { Output.summariesSilenced = true }
    InterruptLine.install(for: command.name)
    do {
        var spec = command.spec
        spec.flags.insert("--help")
        var parsed = try ArgumentParser.parse(Array(args.dropFirst()), spec: spec, command: command.name)
        if parsed.has("--help") { print(command.help); return 0 }
        // A named remote (`slmstore remote add`) stands for its URL and settings.
        if NamedRemotes.remotePosition[command.name] != nil, FileSystem.exists(context.storePath + "/config") {
            parsed = try NamedRemotes.apply(parsed, command: command, store: context.storePath)
        }
        return try command.run(parsed, context)
    } catch let e as SLMError {
        if case .cancelled = e.kind {
            // Interrupted by the user: one line on what was kept, and the status a shell expects.
            Output.error("interrupted; what was fetched and verified is kept: run the same command again to resume")
            return 130
        }
        Output.error(message(for: e))
        // A script that asked for JSON gets the failure as JSON too, on the same stream as a result.
        if args.prefix(while: { $0 != "--" }).contains("--json") {
            Output.json(.object(["error": .object(["code": .string(e.code), "message": .string(message(for: e)),
                                                   "exit_status": .int(exitCode(for: e))])]))
        }
        return exitCode(for: e)
    } catch {
        Output.error("\(error)")
        return 1
    }
}

/// The option each library setting comes from, and what else to say about it: the library
/// names settings in its own words, the command line by the options a user typed.
let settingOptions: [SLMError.Setting: (option: String, hint: String)] = [
    .rolloutPercent: ("--percent", ""), .minReportingDevices: ("--min-devices", ""), .haltOnFailure: ("--halt-on-failure", ""),
    .advanceSchedule: ("--advance-after (and --advance-step)", ""), .downloadWindow: ("--window", ""),
    .reportURL: ("--report-url", ""), .deviceID: ("--device-id", ""), .clientKey: ("--key", " (pass --cert FILE too)"),
    .signingKeys: ("--sign", " (--sign KEY)"), .healthCheck: ("--health-check", " (--keep 1 or more)"),
    .caBundle: ("--cacert", ""), .clientCertificate: ("--cert", ""), .tokenFile: ("--token-file", ""),
    .maxInstallSize: ("--max-install-size", ""), .maxExpansion: ("--max-expansion", ""), .revision: ("--revision", ""),
]

/// A remedy the library attached to an error, worded as what to type.
func hint(for remedy: SLMError.Remedy) -> String {
    func option(_ s: SLMError.Setting) -> String { settingOptions[s]?.option ?? s.rawValue }
    switch remedy {
    case let .given(s): return "from \(option(s))"
    case .raise(.maxExpansion): return "if this is expected, pass --max-expansion 0 or a higher factor"
    case let .raise(s): return "more than \(option(s)) allows; raise it if this is expected"
    case .overwrite: return "use --force to write into it"
    case .skipStaging: return "use --skip-staging to override"
    case .allowBreaking: return "use --allow-breaking"
    case .signRelease: return "publish with `slmstore push REMOTE --sign KEY`"
    case .signFromScratch: return "to start again from this store's versions only: `slmstore push REMOTE --sign KEY --from-scratch`"
    case .trustPrivateCA: return "a private CA: --cacert FILE or SLMSTORE_CA_BUNDLE"
    case .presentClientCertificate: return "a server that asks for a client certificate needs --cert and --key"
    case .sendCredentials: return "set SLMSTORE_TOKEN or --token-file, or add the host to ~/.netrc"
    case .publish: return "was the store published with `slmstore push`?"
    case .renewRelease: return "the publisher must run `slmstore resign`"
    case .verifyStore: return "run `slmstore verify`"
    case let .createStore(path): return "create one with `slmstore init \(path)` or `slmstore add`"
    case .generateKey: return "as `slmstore keygen` writes"
    case .listCardKeys: return "see `slmstore card-keys`"
    case let .confirmRemoteID(id): return "check it against your devices, then `slmstore push REMOTE --remote-id \(id)`"
    case .enrollDevice: return "enroll it with `slmstore device enroll REMOTE DEVICE-ID`"
    case .chooseRevision: return "pass --revision REV"
    case .removeAnyway: return "they keep working if it goes: use --force to remove it anyway"
    case .reuseVersionNumber: return "pull it back (`slmstore pull REMOTE NAME@VERSION`), or add the files as another version; --force adds it anyway"
    }
}

/// The one line a failed command prints: the library's message, with settings and remedies
/// named by the options a user types.
func message(for error: SLMError) -> String {
    switch error {
    case let .invalidSetting(setting, problem):
        guard let o = settingOptions[setting] else { return error.description }
        return "\(o.option) \(problem)\(o.hint)"
    case let .caused(outer, cause): return "\(message(for: outer)): \(message(for: cause))"
    case let .remedied(inner, remedy): return "\(message(for: inner)) (\(hint(for: remedy)))"
    default: return error.description
    }
}

/// Exit statuses scripts can tell apart; the library only says what happened, this says how to report it.
func exitCode(for error: SLMError) -> Int32 {
    switch error.kind {
    case .argument, .invalidSetting: return 2
    case .notFound: return 3
    case .conflict: return 4
    case .damaged, .fileMismatch: return 5
    case .remote, .remoteStatus, .transport: return 6
    case .unsupportedFormat: return 7
    case .untrusted: return 8
    case .cancelled: return 130
    case .input, .notAStore, .io, .failed, .caused, .remedied: return 1
    }
}

setvbuf(stdout, nil, _IOFBF, 1 << 16)
// The crash tests name a commit step at which the process kills itself.
CrashPoint.arm(getenv("SLMSTORE_CRASH_AT").map { String(cString: $0) })
let status = runMain()
fflush(stdout)
exit(status)
