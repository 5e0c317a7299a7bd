import CRM
import Graph
import HTTP

/// Whether a failed request means the service could not be reached or could not answer now (a transport
/// failure, or throttling and server errors after the client's retries), as opposed to an answer about
/// what was asked for (404: gone; 403: not the user's to see; a bad request), which a listing kept from
/// before must never paper over.
enum ServiceOutage {
    static func explains(_ error: Error) -> Bool {
        switch error {
        case let error as HTTPError:
            switch error {
            case .transport, .retriesExhausted: true
            default: false
            }
        case let error as GraphError: error.status == 429 || error.status >= 500
        case let error as SalesforceError: error.status == 429 || error.status >= 500
        default: false
        }
    }
}
