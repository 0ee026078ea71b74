"""SPF of the customer's domain: the result types, the checker (pyspf, dnspython), the advisor."""
