//! TLS for quic:// in the libp2p-TLS shape (wire-compatible with the libp2p
//! engine): ALPN `libp2p`, TLS 1.3 only, both sides present one self-signed
//! certificate. The certificate carries the libp2p identity extension, which
//! JavaScript checks after the handshake (src/transport/quic-engine-cert.ts)
//! before any application data flows. Here we only prove possession: the
//! peer's CertificateVerify signature must verify with the certificate's own
//! public key (checked with ring directly, so a critical libp2p extension
//! that webpki would refuse does not matter).
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::internal::msgs::handshake::DigitallySignedStruct;
use rustls::server::{ClientCertVerified, ClientCertVerifier};
use rustls::{Certificate, DistinguishedNames, Error, PrivateKey, ServerName, SignatureScheme};

pub const ALPN: &[u8] = b"libp2p";

const SCHEMES: [SignatureScheme; 3] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
];

/// One DER element: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, head) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((tag, &input[head..end], &input[end..]))
}

/// The subjectPublicKey bits of a certificate (RFC 5280 §4.1).
pub fn public_key_bits(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    // [0] version is optional
    if *rest.first()? == 0xa0 {
        rest = der(rest)?.2;
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = der(rest)?.2;
    }
    let (tag, spki, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _alg, after) = der(spki)?;
    let (tag, bits, _) = der(after)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(&bits[1..])
}

fn verify_signature(message: &[u8], cert: &Certificate, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
    let key = public_key_bits(&cert.0).ok_or_else(|| Error::General("malformed peer certificate".into()))?;
    let alg: &dyn ring::signature::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &ring::signature::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => &ring::signature::ED25519,
        _ => return Err(Error::PeerMisbehavedError("unsupported signature scheme".into())),
    };
    ring::signature::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| Error::InvalidCertificateSignature)?;
    Ok(HandshakeSignatureValid::assertion())
}

/// Accepts exactly one certificate; identity is judged in JS from the libp2p extension.
struct PeerCert;

impl ServerCertVerifier for PeerCert {
    fn verify_server_cert(
        &self, _end: &Certificate, intermediates: &[Certificate], _name: &ServerName,
        _scts: &mut dyn Iterator<Item = &[u8]>, _ocsp: &[u8], _now: SystemTime,
    ) -> Result<ServerCertVerified, Error> {
        if !intermediates.is_empty() {
            return Err(Error::General("libp2p-TLS expects exactly one certificate".into()));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, _m: &[u8], _c: &Certificate, _d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatibleError("TLS 1.2 is not allowed".into()))
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &Certificate, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for PeerCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> Option<bool> {
        Some(true)
    }
    fn client_auth_root_subjects(&self) -> Option<DistinguishedNames> {
        Some(Vec::new())
    }
    fn verify_client_cert(&self, _end: &Certificate, intermediates: &[Certificate], _now: SystemTime) -> Result<ClientCertVerified, Error> {
        if !intermediates.is_empty() {
            return Err(Error::General("libp2p-TLS expects exactly one certificate".into()));
        }
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, _m: &[u8], _c: &Certificate, _d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatibleError("TLS 1.2 is not allowed".into()))
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &Certificate, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

pub fn server_crypto(cert: &[u8], key: &[u8]) -> Result<rustls::ServerConfig, String> {
    let mut cfg = rustls::ServerConfig::builder()
        .with_safe_default_cipher_suites()
        .with_safe_default_kx_groups()
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(PeerCert))
        .with_single_cert(vec![Certificate(cert.to_vec())], PrivateKey(key.to_vec()))
        .map_err(|e| format!("certificate or key rejected: {}", e))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

pub fn client_crypto(cert: &[u8], key: &[u8]) -> Result<rustls::ClientConfig, String> {
    let mut cfg = rustls::ClientConfig::builder()
        .with_safe_default_cipher_suites()
        .with_safe_default_kx_groups()
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_custom_certificate_verifier(Arc::new(PeerCert))
        .with_single_cert(vec![Certificate(cert.to_vec())], PrivateKey(key.to_vec()))
        .map_err(|e| format!("certificate or key rejected: {}", e))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}
