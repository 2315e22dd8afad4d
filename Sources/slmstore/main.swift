// Entry point of the `slmstore` command: global options, dispatch, and error reporting.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

let commands: [Command] = storeCommands + deliveryCommands + registryCommands + syncCommands + trustCommands + [demoCommand]

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
        i += 1
    }
    guard let first = args.first else { print(topLevelHelp()); return 2 }
    if first == "--help" || first == "-h" || first == "help" {
        if first == "help", args.count > 1, let c = commands.first(where: { $0.name == args[1] }) { print(c.help); return 0 }
        print(topLevelHelp())
        return 0
    }
    if first == "--version" {
        print("slmstore \(SLMStoreVersion.current) (store format \(StoreConfig.currentFormat), manifest format \(Manifest.currentFormat), commit \(buildCommit))")
        return 0
    }
    // The device-side commands run beside the model: one malloc arena keeps their peak low.
    if first == "pull" || first == "sync" { HeapRelease.limitArenas(1) }
    guard let command = commands.first(where: { $0.name == first }) else {
        Output.error("unknown command \"\(first)\" (run `slmstore --help` for the list)")
        return 2
    }
    do {
        var spec = command.spec
        spec.flags.insert("--help")
        let parsed = try ArgumentParser.parse(Array(args.dropFirst()), spec: spec, command: command.name)
        if parsed.has("--help") { print(command.help); return 0 }
        return try command.run(parsed, context)
    } catch let e as SLMError {
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
]

/// The one line a failed command prints: the library's message, with settings named by their options.
func message(for error: SLMError) -> String {
    if case let .invalidSetting(setting, problem) = error, let o = settingOptions[setting] {
        return "\(o.option) \(problem)\(o.hint)"
    }
    return error.description
}

/// Exit statuses scripts can tell apart; the library only says what happened, this says how to report it.
func exitCode(for error: SLMError) -> Int32 {
    switch error {
    case .argument, .invalidSetting: return 2
    case .notFound: return 3
    case .conflict: return 4
    case .damaged, .fileMismatch: return 5
    case .remote, .remoteStatus, .transport: return 6
    case .unsupportedFormat: return 7
    case .untrusted: return 8
    case .cancelled: return 130
    case .input, .notAStore, .io, .failed: return 1
    }
}

setvbuf(stdout, nil, _IOFBF, 1 << 16)
// The crash tests name a commit step at which the process kills itself.
CrashPoint.arm(getenv("SLMSTORE_CRASH_AT").map { String(cString: $0) })
let status = runMain()
fflush(stdout)
exit(status)
