// `completion`: shell completion scripts for bash, zsh and fish, generated from the command
// table (names, summaries, each command's options), so they never fall behind the commands.

import SLMStoreKit

let completionCommand = Command(
    name: "completion", summary: "Print a shell completion script (bash, zsh or fish)",
    usage: "slmstore completion bash|zsh|fish",
    details: """
    Load it in the shell's startup file:
      bash   eval "$(slmstore completion bash)"      (or save it under /etc/bash_completion.d/)
      zsh    eval "$(slmstore completion zsh)"       (after compinit)
      fish   slmstore completion fish > ~/.config/fish/completions/slmstore.fish
    Commands, and each command's options, complete; other words complete as file names.
    """,
    spec: OptionSpec()
) { a, _ in
    try requirePositionals(a, "completion", min: 1, max: 1, usage: "slmstore completion bash|zsh|fish")
    switch a.positionals[0] {
    case "bash": print(Completion.bash())
    case "zsh": print(Completion.zsh())
    case "fish": print(Completion.fish())
    case let other: throw SLMError.argument("completion: \"\(other)\" is not a shell this knows (bash, zsh or fish)")
    }
    return 0
}

enum Completion {
    static let global = ["--store", "--no-progress", "--quiet", "--verbose", "--help"]

    /// Each command with its options, sorted.
    static var table: [(name: String, summary: String, options: [String])] {
        commands.map { c in (c.name, c.summary, (Array(c.spec.values.union(c.spec.flags)) + global).sorted()) }
    }

    static func bash() -> String {
        var s = "# slmstore completion for bash\n_slmstore() {\n  local cur=\"${COMP_WORDS[COMP_CWORD]}\" cmd=\"\" i\n"
        s += "  for ((i = 1; i < COMP_CWORD; i++)); do case \"${COMP_WORDS[i]}\" in --store) ((i++));; -*) ;; *) cmd=\"${COMP_WORDS[i]}\"; break;; esac; done\n"
        s += "  if [[ -z \"$cmd\" ]]; then\n"
        s += "    if [[ \"$cur\" == -* ]]; then COMPREPLY=($(compgen -W \"\(global.joined(separator: " ")) --version\" -- \"$cur\")); "
        s += "else COMPREPLY=($(compgen -W \"\(table.map(\.name).joined(separator: " "))\" -- \"$cur\")); fi\n    return\n  fi\n"
        s += "  if [[ \"$cur\" == -* ]]; then\n    case \"$cmd\" in\n"
        for c in table { s += "      \(c.name)) COMPREPLY=($(compgen -W \"\(c.options.joined(separator: " "))\" -- \"$cur\"));;\n" }
        s += "    esac\n  else\n    COMPREPLY=($(compgen -f -- \"$cur\"))\n  fi\n}\ncomplete -o filenames -F _slmstore slmstore"
        return s
    }

    static func zsh() -> String {
        func quote(_ t: String) -> String { t.replacingOccurrences(of: "'", with: "'\\''").replacingOccurrences(of: ":", with: "\\:") }
        var s = "#compdef slmstore\n# slmstore completion for zsh\n_slmstore() {\n  local -a cmds\n  cmds=(\n"
        for c in table { s += "    '\(c.name):\(quote(c.summary))'\n" }
        s += "  )\n  if (( CURRENT == 2 )); then _describe command cmds; return; fi\n  case $words[2] in\n"
        for c in table { s += "    \(c.name)) if [[ $PREFIX == -* ]]; then compadd -- \(c.options.joined(separator: " ")); else _files; fi;;\n" }
        s += "  esac\n}\ncompdef _slmstore slmstore"
        return s
    }

    static func fish() -> String {
        func quote(_ t: String) -> String { "'" + t.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'" }
        var s = "# slmstore completion for fish\ncomplete -c slmstore -f\n"
        for c in table {
            s += "complete -c slmstore -n __fish_use_subcommand -a \(c.name) -d \(quote(c.summary))\n"
            for o in c.options { s += "complete -c slmstore -n '__fish_seen_subcommand_from \(c.name)' -l \(o.dropFirst(2))\n" }
            s += "complete -c slmstore -n '__fish_seen_subcommand_from \(c.name)' -F\n"
        }
        return s
    }
}
