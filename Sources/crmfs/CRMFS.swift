import ArgumentParser
import Foundation
import Logging

@main
struct CRMFS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crmfs",
        abstract: "Mount CRM records and their SharePoint documents as a filesystem.",
        subcommands: [DemoCommand.self, SandboxCommand.self])

    static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
