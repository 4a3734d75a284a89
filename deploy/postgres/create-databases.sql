-- Run once by the postgres image on its first start (docker-compose.yml, profile "postgres"):
-- one database per service, as each service owns its data (TRADER_<SERVICE>_DB_URL).
CREATE DATABASE gateway;
CREATE DATABASE data;
CREATE DATABASE portfolio;
CREATE DATABASE planner;
CREATE DATABASE trading;
CREATE DATABASE display;
