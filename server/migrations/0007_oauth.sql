-- OAuth: the refresh-token family an authorization code produced, so that presenting the code
-- a second time revokes the tokens of its first use (RFC 6749 §4.1.2). NULL until redeemed.
ALTER TABLE oauth_codes ADD COLUMN family_id uuid;
