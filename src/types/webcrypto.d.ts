// @types/node 20 declares WebCrypto types under `webcrypto` only; @peculiar/x509
// APIs speak the global DOM names. Alias them globally (no DOM lib needed).
declare global {
  type Crypto = import('node:crypto').webcrypto.Crypto
  type CryptoKey = import('node:crypto').webcrypto.CryptoKey
  type CryptoKeyPair = import('node:crypto').webcrypto.CryptoKeyPair
}
export {}
