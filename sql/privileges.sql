-- Nothing is granted to PUBLIC. The README shows the GRANTs for executor, reader and admin roles.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA workflow FROM PUBLIC;
