"""Payment sources. Each turns its wire format into normalized transactions and a resumable
cursor; none of them touches the database (the workers store what they return)."""
