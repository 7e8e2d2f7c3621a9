-- Encrypted delivery (OpenPGP): a member's public key, sealed like the real address
-- (XChaCha20-Poly1305 under the master key; never in clear). NULL: mail goes in clear.
-- A pending web registration carries the key it was given until it is confirmed.
ALTER TABLE aliases ADD COLUMN pgp_sealed BLOB;
ALTER TABLE pending ADD COLUMN pgp_sealed BLOB;
