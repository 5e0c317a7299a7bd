import ArgumentParser
import Config
import Foundation
import Logging

@main
struct CRMFS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crmfs",
        abstract: "Mount CRM records and their SharePoint documents as a filesystem.",
        subcommands: [MountCommand.self, SyncCommand.self, StatusCommand.self, CheckCommand.self, LoginCommand.self, LogoutCommand.self, RelayCommand.self, DemoCommand.self, SandboxCommand.self])

    /// Run as `mount.crmfs` (by mount(8) and fstab), crmfs takes mount(8)'s helper arguments.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if URL(fileURLWithPath: CommandLine.arguments[0]).lastPathComponent == "mount.crmfs" {
            await main(MountHelperArguments.translate(arguments))
        } else {
            await main(arguments)
        }
    }

    /// Says what went wrong on stderr (`crmfs: …`) and exits 1. Service texts in it are shown, never obeyed
    /// (see `printable`).
    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("crmfs: \(printable(message))\n".utf8))
        Foundation.exit(1)
    }

    /// Text from a service or a file, safe to print on a terminal: control characters (an escape
    /// sequence could retitle the window, move the cursor or hide what follows) become `?`; line breaks
    /// and tabs stay.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            let control = scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
            return control && scalar != "\n" && scalar != "\t" ? "?" : scalar
        }))
    }

    /// The config a command names (a path, or NAME of `~/.config/crmfs/NAME.conf`), or a clear failure
    /// naming the file, key and problem.
    static func loadConfig(_ argument: String) throws -> MountConfig {
        do { return try ConfigLoader.load(path: UserPaths().config(argument)) } catch { fail("\(error)") }
    }

    static func bootstrapLogging(level: Logger.Level) {
        let journal = JournalLogHandler.stderrIsJournal
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// mount(8) runs `mount.crmfs SPEC DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`: SPEC is the config.
enum MountHelperArguments {
    static func translate(_ arguments: [String]) -> [String] {
        var positional: [String] = []
        var options: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "-o":
                if index + 1 < arguments.count { options.append(arguments[index + 1]) }
                index += 2
            case "-t", "-N":
                index += 2  // the type (crmfs) and a namespace: nothing to do with them
            case _ where argument.hasPrefix("-o") && argument.count > 2:
                options.append(String(argument.dropFirst(2)))
                index += 1
            case _ where argument.hasPrefix("-"):
                index += 1  // -s (sloppy), -f (fake), -n (no mtab), -v (verbose)
            default:
                positional.append(argument)
                index += 1
            }
        }
        return ["mount"] + positional + options.flatMap { ["-o", $0] }
    }
}
