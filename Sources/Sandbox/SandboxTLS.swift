import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// HTTPS for the sandbox (`crmfs sandbox --tls`): a certificate authority of its own, made once per
/// state directory (`ca.pem`, with its key in `ca-key.pem`, 0600), and a server certificate it signs for
/// the loopback names (`127.0.0.1`, `::1`, `localhost`). A mount trusts it through `ca_file`, as it
/// would a company's private CA.
enum SandboxTLS {
    static func context(stateDirectory: URL) throws -> NIOSSLContext {
        let authority = try loadOrMakeAuthority(in: stateDirectory)
        let serverKey = P256.Signing.PrivateKey()
        let now = Date()
        let server = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(30 * 86_400),
            issuer: authority.certificate.subject, subject: try DistinguishedName { CommonName("crmfs sandbox") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                                         .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
                                         .dnsName("localhost")])
            },
            issuerPrivateKey: Certificate.PrivateKey(authority.key))
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(try server.serializeAsPEM().pemString.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(serverKey.pemRepresentation.utf8), format: .pem)))
        return try NIOSSLContext(configuration: configuration)
    }

    /// The CA's certificate file, for `ca_file`.
    static func authorityFile(in stateDirectory: URL) -> URL { stateDirectory.appendingPathComponent("ca.pem") }

    private static func loadOrMakeAuthority(in directory: URL) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
        let certificateFile = authorityFile(in: directory)
        let keyFile = directory.appendingPathComponent("ca-key.pem")
        if let certificatePEM = try? String(contentsOf: certificateFile, encoding: .utf8),
           let keyPEM = try? String(contentsOf: keyFile, encoding: .utf8),
           let certificate = try? Certificate(pemEncoded: certificatePEM),
           let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM),
           certificate.notValidAfter > Date().addingTimeInterval(86_400) {
            return (certificate, key)
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("crmfs sandbox CA") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        try Data(key.pemRepresentation.utf8).write(to: keyFile, options: .atomic)
        chmod(keyFile.path, 0o600)
        try Data(try certificate.serializeAsPEM().pemString.utf8).write(to: certificateFile, options: .atomic)
        return (certificate, key)
    }
}
